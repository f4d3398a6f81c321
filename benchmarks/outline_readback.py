"""Outlines of real runs read back: each bundled package segments 12 val images of its kind as a user runs
it (no options); every cell's ImageJ ROI (read with roifile) and GeoJSON geometry are rasterised by the
pixel-centre rule (rings even-odd) and compared with the cell's mask (IoU). Target (issue 20): ≥ 0.95 per cell.

    python benchmarks/outline_readback.py        # writes benchmarks/results/outline_readback.md
"""
import json, tempfile, numpy as np, roifile
from pathlib import Path
from skimage.draw import polygon2mask
from cellpoint.runtime import Segmenter
from cellpoint.runtime.polygons import instance_outlines
from cellpoint.runtime.outputs.imagej_rois import write_roi_zip
from cellpoint.runtime.outputs.geojson import write_geojson
from cellpoint.training.datasets import list_samples, load_sample

def fill(rings, shape):
    m = np.zeros(shape, bool)
    for r in rings:
        m ^= polygon2mask(shape, np.asarray(r, float)[:, ::-1] - 0.5)
    return m

tmp = Path(tempfile.mkdtemp())
lines = ['`python benchmarks/outline_readback.py`', '']
for model, ds in (("objectness-nuclei", "dsb2018_bbbc038"), ("lacss-nuclei", "dsb2018_bbbc038"),
                  ("shape-nuclei", "dsb2018_bbbc038"),
                  ("wsispdr-cells-phase", "usiigaci_phase_contrast"), ("point2mask-cells-phase", "usiigaci_phase_contrast")):
    seg = Segmenter(model); roi_iou, geo_iou = [], []
    for s in list_samples(ds, "val")[:12]:
        img, _ = load_sample(s)
        lab = seg.segment(img).labels
        outlines = instance_outlines(lab)
        write_roi_zip(tmp / "r.zip", outlines); write_geojson(tmp / "c.geojson", outlines)
        for roi in roifile.roiread(tmp / "r.zip"):
            rings = roi.coordinates(multi=True) if roi.composite else [roi.coordinates()]
            m, f = lab == int(roi.name), fill(rings, lab.shape)
            roi_iou.append((m & f).sum() / (m | f).sum())
        for feat in json.loads((tmp / "c.geojson").read_text())["features"]:
            g = feat["geometry"]; polys = g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]
            f = np.zeros(lab.shape, bool)
            for p in polys: f |= fill(p, lab.shape)
            m = lab == feat["properties"]["measurements"]["label"]
            geo_iou.append((m & f).sum() / (m | f).sum())
    r, g = np.array(roi_iou), np.array(geo_iou)
    lines.append(f"- {model} on 12 {ds} val images: {len(r)} cells; ROI IoU min {r.min():.3f}, < 0.95: {(r < .95).sum()}; "
          f"GeoJSON IoU min {g.min():.3f}, < 0.95: {(g < .95).sum()}")

out = Path(__file__).resolve().parent / "results" / "outline_readback.md"
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
