"""Outputs for other tools (`runtime.outputs`, `cellpoint segment --rois --geojson --ome-zarr --measure`),
each read back with the library its destination tool uses: roifile (Fiji's ROI zip), GeoJSON checked for
valid geometry and QuPath's fields (shapely when installed), ome-zarr-py's reader and zarr (napari), and
regionprops (measurements). Outlines read back must fill to their cell: IoU >= 0.95 per cell under the
pixel-centre rule."""
import json
import uuid

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cellpoint.runtime.cli.segment import segment
from cellpoint.runtime.outputs.geojson import cell_features, outline_geometry, write_geojson
from cellpoint.runtime.outputs.imagej_rois import write_roi_zip
from cellpoint.runtime.outputs.ome_zarr import level_shapes, write_ome_zarr
from cellpoint.runtime.polygons import instance_outlines, instance_polygons
from conftest import synthetic_nuclei

roifile = pytest.importorskip("roifile")


# ------------------------------------------------------------------------------------------- helpers

def outline_cases() -> np.ndarray:
    """Cells whose outlines are easy to get wrong: two touching rectangles, a non-convex C, a ring with a
    hole (outlines are outer boundaries: the hole is not in them), a bay joined to the outside only at a
    corner (the outline touches itself there), cells on the image border, touching ellipses."""
    labels = np.zeros((80, 110), np.uint16)
    labels[4:20, 4:16] = 1
    labels[4:20, 16:26] = 2
    labels[26:50, 4:30] = 3
    labels[32:44, 12:30] = 0
    labels[55:78, 4:28] = 4
    labels[61:72, 10:21] = 0
    labels[4:12, 34:44] = 5                     # a frame whose corner pixel is missing: the bay inside
    labels[5:11, 35:43] = 0                     # meets the outside at one pixel corner, (x, y) = (35, 5)
    labels[4, 34] = 0
    labels[0:10, 95:110] = 6
    cv2.ellipse(labels, (70, 45), (14, 8), 25, 0, 360, 7, -1)
    cv2.ellipse(labels, (78, 62), (10, 7), -10, 0, 360, 8, -1)
    labels[76:80, 60:110] = 9
    return labels


def cell_without_holes(labels: np.ndarray, label: int) -> np.ndarray:
    """A cell's mask with its holes filled: what its outer outline (the only one an ROI gets, from
    `instance_polygons`) gives back. Only cell 4 of `outline_cases` has a hole (IoU 0.78 with the ring)."""
    mask = labels == label
    if label == 4:
        mask[55:78, 4:28] = True
    return mask


def fill(geometry_or_vertices, shape) -> np.ndarray:
    """Rasterise an outline by the pixel-centre rule: a (K,2) array of (x, y) pixel-corner vertices, or a
    GeoJSON Polygon / MultiPolygon (exteriors minus holes)."""
    from skimage.draw import polygon2mask

    def ring(points):
        points = np.asarray(points, np.float64)
        return polygon2mask(shape, points[:, ::-1] - 0.5)  # polygon2mask puts pixel centres on integers

    if isinstance(geometry_or_vertices, dict):
        polygons = (geometry_or_vertices["coordinates"] if geometry_or_vertices["type"] == "MultiPolygon"
                    else [geometry_or_vertices["coordinates"]])
        mask = np.zeros(shape, bool)
        for rings in polygons:
            part = ring(rings[0])
            for hole in rings[1:]:
                part &= ~ring(hole)
            mask |= part
        return mask
    return ring(geometry_or_vertices)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def check_ring(ring, exterior: bool) -> None:
    """A GeoJSON linear ring: closed, >= 4 positions, no vertex repeated but the closing one, edges that do
    not cross, and RFC 7946's winding (exterior counter-clockwise, holes clockwise, numbers as they are)."""
    points = np.asarray(ring, np.float64)
    assert len(points) >= 4 and np.array_equal(points[0], points[-1])
    assert len({tuple(p) for p in points[:-1].tolist()}) == len(points) - 1
    x, y = points[:, 0], points[:, 1]
    area = (np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:])) / 2
    assert (area > 0) == exterior
    edges = list(zip(points[:-1], points[1:]))
    for i, (a, b) in enumerate(edges):
        for j in range(i + 2, len(edges) - (1 if i == 0 else 0)):
            c, d = edges[j]
            assert not _segments_cross(a, b, c, d), (a, b, c, d)


def _segments_cross(a, b, c, d) -> bool:
    def side(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def check_geojson(collection: dict) -> dict[int, dict]:
    """QuPath's expectations and valid geometry; returns {label: feature}."""
    assert collection["type"] == "FeatureCollection"
    features = {}
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        uuid.UUID(feature["id"])                         # QuPath takes a UUID as the object's id
        properties = feature["properties"]
        assert properties["objectType"] in ("detection", "annotation")
        measurements = properties["measurements"]
        assert all(isinstance(v, (int, float)) for v in measurements.values())
        assert properties["name"] == str(measurements["label"])
        geometry = feature["geometry"]
        assert geometry["type"] in ("Polygon", "MultiPolygon")
        for rings in (geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]):
            check_ring(rings[0], exterior=True)
            for hole in rings[1:]:
                check_ring(hole, exterior=False)
        try:
            from shapely.geometry import shape
        except ImportError:
            pass
        else:
            assert shape(geometry).is_valid, feature
        features[int(measurements["label"])] = feature
    return features


def read_ngff(path):
    """(image node, label node) of an OME-Zarr store, read by ome-zarr-py as napari-ome-zarr does."""
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    nodes = list(Reader(parse_url(str(path)))())
    image = nodes[0]
    label = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))
    return image, label


def check_ngff_models(path) -> None:
    """Validate the store with ome-zarr-models when it works with the installed pydantic."""
    try:
        import zarr
        from ome_zarr_models import open_ome_zarr
        from pydantic import PydanticUserError
    except ImportError:
        return
    group = zarr.open_group(str(path), mode="r")
    try:
        kinds = [type(open_ome_zarr(g)).__name__ for g in (group, group["labels"], group["labels/cells"])]
    except RuntimeError as error:
        if "not fully defined" in str(error):
            return  # ome-zarr-models built for another pydantic (it pins pydantic<2.13): cannot validate here
        raise
    except PydanticUserError:
        return
    assert kinds == ["Image", "Labels", "ImageLabel"]


# ------------------------------------------------------------------------------------------- writers

def test_roi_zip_outlines_fill_back_to_their_cells(tmp_path):
    labels = outline_cases()
    write_roi_zip(tmp_path / "outer.zip", instance_polygons(labels))
    for roi in roifile.roiread(tmp_path / "outer.zip"):
        assert roi.roitype == roifile.ROI_TYPE.TRACED
        assert np.array_equal(fill(roi.coordinates(), labels.shape), cell_without_holes(labels, int(roi.name)))
    write_roi_zip(tmp_path / "rois.zip", instance_outlines(labels))
    rois = roifile.roiread(tmp_path / "rois.zip")
    assert [r.name for r in rois] == [str(i) for i in range(1, 10)]
    assert sum(roi.composite for roi in rois) == 1  # cell 4, the ring, as ImageJ's ShapeRoi
    for roi in rois:
        rings = roi.coordinates(multi=True) if roi.composite else [roi.coordinates()]
        mask = np.zeros(labels.shape, bool)
        for ring in rings:
            mask ^= fill(np.asarray(ring, np.float64), labels.shape)  # even-odd, as ImageJ fills a ShapeRoi
        assert np.array_equal(mask, labels == int(roi.name)), roi.name
    write_roi_zip(tmp_path / "none.zip", {})
    assert roifile.roiread(tmp_path / "none.zip") == []


def test_geojson_is_valid_for_quPath_and_fills_back_to_the_cells(tmp_path):
    labels = outline_cases()
    table = {"id": np.arange(1, 10, dtype=np.uint32), "score": np.linspace(0.5, 0.9, 9).astype(np.float32),
             "area_um2": np.r_[np.nan, np.ones(8)]}
    write_geojson(tmp_path / "cells.geojson", instance_outlines(labels), table, image_name="img", pixel_size=0.5)
    collection = json.loads((tmp_path / "cells.geojson").read_text())
    assert collection["cellpoint"]["pixel_size_um"] == 0.5
    features = check_geojson(collection)
    assert sorted(features) == list(range(1, 10))
    for label, feature in features.items():
        assert np.array_equal(fill(feature["geometry"], labels.shape), labels == label), label  # holes too
        assert feature["properties"]["measurements"]["score"] == pytest.approx(table["score"][label - 1])
    assert "area_um2" not in features[1]["properties"]["measurements"]      # NaN: left out
    assert features[5]["geometry"]["type"] == "Polygon" and len(features[5]["geometry"]["coordinates"]) == 2
    again = cell_features(instance_polygons(labels), image_name="img", object_type="annotation",
                          classification=("Nucleus", (0, 0, 255)))
    assert [f["id"] for f in again] == [f["id"] for f in collection["features"]]   # stable ids
    assert again[0]["properties"]["classification"] == {"name": "Nucleus", "color": [0, 0, 255]}
    assert again[0]["properties"]["objectType"] == "annotation"
    with pytest.raises(ValueError):
        outline_geometry(np.array([[0.0, 0.0], [1.0, 0.0]]))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_store_follows_the_labels_convention(tmp_path, version):
    import zarr
    image = np.random.default_rng(0).integers(0, 4000, (70, 90, 2)).astype(np.uint16)
    labels = outline_cases()[:70, :90].astype(np.uint32)
    path = tmp_path / "img.ome.zarr"
    table = {"id": np.unique(labels)[1:], "score": np.full(len(np.unique(labels)) - 1, 0.75)}
    write_ome_zarr(path, image, labels, pixel_size=0.65, name="img", properties=table, version=version, chunk=32,
                   channel_names=["dapi", "gfp"])
    shapes = level_shapes(70, 90, 32)
    assert shapes == [(70, 90), (35, 45), (18, 23)]
    image_node, label_node = read_ngff(path)
    assert [d.shape for d in image_node.data] == [(2,) + s for s in shapes]
    assert [d.shape for d in label_node.data] == [(1,) + s for s in shapes]
    for level, (pixels, cells) in enumerate(zip(image_node.data, label_node.data)):
        step = 2 ** level
        assert np.array_equal(np.asarray(pixels), np.moveaxis(image, -1, 0)[:, ::step, ::step])
        assert np.array_equal(np.asarray(cells)[0], labels[::step, ::step])
    assert image_node.metadata["channel_names"] == ["dapi", "gfp"]
    assert [a["name"] for a in image_node.metadata["axes"]] == ["c", "y", "x"]
    assert all(a.get("unit") == "micrometer" for a in image_node.metadata["axes"][1:])
    assert [t[0]["scale"] for t in image_node.metadata["coordinateTransformations"]] == \
        [[1.0, 0.65 * 2 ** k, 0.65 * 2 ** k] for k in range(3)]
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group["labels/cells"].attrs)
    attrs = attrs.get("ome", attrs)
    assert attrs["image-label"]["source"] == {"image": "../../"}
    assert attrs["image-label"]["properties"][0] == {"label-value": 1, "score": 0.75}
    assert group["labels/cells/0"].dtype == np.uint16
    check_ngff_models(path)


def test_ome_zarr_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "img.ome.zarr"
    image, labels, _ = synthetic_nuclei(shape=(40, 50), n=2, radius=5)
    write_ome_zarr(path, image, labels)
    first = read_ngff(path)[1].metadata["coordinateTransformations"]
    assert first[0][0]["scale"] == [1.0, 1.0]                        # no pixel size: pixels

    class Broken:
        shape, dtype = image.shape, image.dtype

        def __getitem__(self, key):
            raise OSError("disk gone")

    with pytest.raises(OSError):
        write_ome_zarr(path, Broken(), labels, pixel_size=2.0)
    assert read_ngff(path)[1].metadata["coordinateTransformations"] == first   # the old store, whole
    assert [p.name for p in tmp_path.iterdir()] == ["img.ome.zarr"]              # no temporary folder left
    write_ome_zarr(path, image, labels, pixel_size=2.0)
    assert read_ngff(path)[1].metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["img.ome.zarr"]


# ------------------------------------------------------------------------------------------- the CLI

def _nuclei_with_touching_pair(seed=3):
    """A float32 synthetic nuclei image with two more discs that touch, in its top right corner."""
    image, labels, _ = synthetic_nuclei(shape=(112, 144), n=6, radius=8, seed=seed)
    image[:24, 108:] = np.where(labels[:24, 108:] > 0, image[:24, 108:], 20.0)
    for centre in ((12, 120), (12, 135)):
        cv2.circle(image, centre[::-1], 7, 220.0, -1)
    return image


def test_segment_writes_every_output_and_each_reads_back(tmp_path):
    from skimage.measure import regionprops
    image = _nuclei_with_touching_pair()
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "img.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron"})
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--rois", "--geojson", "--ome-zarr", "--measure"]
    result = CliRunner().invoke(segment, args)
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(out / "img_labels.tif")
    ids = np.unique(labels)[1:].tolist()
    assert len(ids) >= 6

    rois = roifile.roiread(out / "img_rois.zip")
    assert [int(r.name) for r in rois] == ids
    for roi in rois:
        assert iou(fill(roi.coordinates(), labels.shape), labels == int(roi.name)) >= 0.95

    collection = json.loads((out / "img_cells.geojson").read_text())
    features = check_geojson(collection)
    assert sorted(features) == ids and collection["cellpoint"]["pixel_size_um"] == 0.5
    for label, feature in features.items():
        assert iou(fill(feature["geometry"], labels.shape), labels == label) >= 0.95
        assert feature["properties"]["objectType"] == "detection"
        assert {"score", "area_px", "area_um2", "solidity"} <= set(feature["properties"]["measurements"])

    image_node, label_node = read_ngff(out / "img.ome.zarr")
    assert np.array_equal(np.asarray(image_node.data[0]), image)
    assert np.array_equal(np.asarray(label_node.data[0]), labels)
    assert image_node.metadata["coordinateTransformations"][0][0]["scale"] == [0.5, 0.5]
    assert all(a["unit"] == "micrometer" for a in label_node.metadata["axes"])
    check_ngff_models(out / "img.ome.zarr")

    lines = (out / "img_instances.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert {"area_px", "area_um2", "perimeter_px", "perimeter_um", "equivalent_diameter_px", "eccentricity",
            "solidity", "mean_intensity_c0", "integrated_intensity_c0", "max_intensity_c0"} <= set(header)
    for row, p in zip(rows, regionprops(labels.astype(np.int64), intensity_image=image.astype(np.float64))):
        assert int(row["id"]) == p.label and int(row["area_px"]) == p.area
        assert float(row["area_um2"]) == pytest.approx(p.area * 0.25, rel=1e-5)
        assert float(row["eccentricity"]) == pytest.approx(p.eccentricity, rel=1e-5, abs=1e-5)
        assert float(row["perimeter_px"]) == pytest.approx(p.perimeter, rel=0.15)
        assert float(row["mean_intensity_c0"]) == pytest.approx(p.intensity_mean, rel=1e-5)
        assert p.solidity - 1e-5 <= float(row["solidity"]) <= p.solidity + 0.1
    assert "pixel_size_um" in (out / "cellpoint_images.csv").read_text().splitlines()[0]

    record = json.loads((out / ".cellpoint" / "done" / "img.json").read_text())
    assert set(record["outputs"]) == {"img_labels.tif", "img_instances.csv", "img_rois.zip", "img_cells.geojson",
                                      "img.ome.zarr"}
    assert "skipped 1" in CliRunner().invoke(segment, args).output
    (out / "img_rois.zip").unlink()                                  # a missing output is redone
    assert "segmented 1" in CliRunner().invoke(segment, args).output and (out / "img_rois.zip").is_file()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_measure_redoes_a_table_without_measurements_and_pixel_size_option_wins(tmp_path):
    image = _nuclei_with_touching_pair(seed=5)
    tifffile.imwrite(tmp_path / "img.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron"})
    cv2.imwrite(str(tmp_path / "plain.png"), np.clip(image, 0, 255).astype(np.uint8))
    out = tmp_path / "out"
    first = CliRunner().invoke(segment, [str(tmp_path), "--out", str(out), "--geojson"])
    assert first.exit_code == 0 and "segmented 2" in first.output
    assert "area_px" not in (out / "img_instances.csv").read_text().splitlines()[0]
    again = CliRunner().invoke(segment, [str(tmp_path), "--out", str(out), "--geojson", "--measure",
                                         "--pixel-size", "0.25"])
    assert again.exit_code == 0 and "segmented 2" in again.output, again.output
    header, row = (out / "img_instances.csv").read_text().splitlines()[:2]
    row = dict(zip(header.split(","), row.split(",")))
    assert float(row["area_um2"]) == pytest.approx(int(row["area_px"]) * 0.0625, rel=1e-5)
    assert json.loads((out / "img_cells.geojson").read_text())["cellpoint"]["pixel_size_um"] == 0.25
    plain = json.loads((out / "plain_cells.geojson").read_text())
    assert plain["cellpoint"]["pixel_size_um"] == 0.25      # the option holds for every input
    no_size = CliRunner().invoke(segment, [str(tmp_path / "plain.png"), "--out", str(tmp_path / "o2"), "--measure"])
    assert no_size.exit_code == 0
    assert "area_um2" not in (tmp_path / "o2" / "plain_instances.csv").read_text().splitlines()[0]


def test_a_large_image_gets_its_ome_zarr_and_a_line_about_the_rest(tmp_path, monkeypatch):
    from cellpoint.runtime import blockwise
    monkeypatch.setattr(blockwise, "LARGE_PIXELS", 300 * 300)
    image = synthetic_nuclei(shape=(400, 500), n=40, radius=9, seed=4)[0]
    tifffile.imwrite(tmp_path / "big.tif", (image * 50).astype(np.uint16), tile=(256, 256))
    out = tmp_path / "out"
    args = [str(tmp_path / "big.tif"), "--out", str(out), "--diameter", "18", "--ome-zarr", "--rois", "--measure"]
    result = CliRunner().invoke(segment, args)
    assert result.exit_code == 0, result.output
    assert "too large for ROIs, measurements" in result.output
    assert not (out / "big_rois.zip").exists()
    labels = tifffile.imread(out / "big_labels.tif")
    _, label_node = read_ngff(out / "big.ome.zarr")
    assert np.array_equal(np.asarray(label_node.data[0]), labels) and labels.max() > 30
    assert "skipped 1" in CliRunner().invoke(segment, args).output


def test_ome_zarr_output_never_replaces_its_input(tmp_path):
    folder = tmp_path / "data"
    image, labels, _ = synthetic_nuclei(shape=(64, 64), n=3, radius=6)
    write_ome_zarr(folder / "img.ome.zarr", image, labels)
    result = CliRunner().invoke(segment, [str(folder / "img.ome.zarr"), "--out", str(folder), "--ome-zarr"])
    assert result.exit_code == 1 and "would replace it" in result.output
    assert np.array_equal(np.asarray(read_ngff(folder / "img.ome.zarr")[0].data[0]), image)


def test_a_cell_in_parts_with_a_hole_and_an_island_is_one_valid_multipolygon(tmp_path):
    labels = np.zeros((40, 40), np.int32)
    labels[2:30, 2:30] = 1
    labels[8:24, 8:24] = 0      # a hole …
    labels[12:18, 12:18] = 1    # … with a part of the same cell inside it
    labels[33:37, 33:37] = 1    # and a part apart
    write_geojson(tmp_path / "c.geojson", instance_outlines(labels))
    (feature,) = json.loads((tmp_path / "c.geojson").read_text())["features"]
    geometry = feature["geometry"]
    assert geometry["type"] == "MultiPolygon" and sorted(len(p) for p in geometry["coordinates"]) == [1, 1, 2]
    assert np.array_equal(fill(geometry, labels.shape), labels == 1)
    check_geojson({"type": "FeatureCollection", "features": [feature]})
    write_roi_zip(tmp_path / "r.zip", instance_outlines(labels))
    (roi,) = roifile.roiread(tmp_path / "r.zip")
    mask = np.zeros(labels.shape, bool)
    for ring in roi.coordinates(multi=True):
        mask ^= fill(np.asarray(ring, np.float64), labels.shape)
    assert roi.composite and np.array_equal(mask, labels == 1)
