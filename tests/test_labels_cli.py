"""`cellpoint labels` on a tiny synthetic COCO file and a label folder."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools import mask as mask_utils

from cellpoint.training.annotations import (coco_label_image, read_label_image, read_points, write_json,
                                            write_points_csv)
from cellpoint.training.cli.labels import labels as labels_command


def _label_image(offset=0):
    labels = np.zeros((30, 40), np.uint16)
    labels[3:9, 4 + offset:12 + offset] = 1
    labels[15:25, 20:30] = 2
    labels[20:28, 5:9] = 3
    return labels


def _coco(tmp_path):
    """Two images with the same stem in different folders (stems must be made unique), RLE + polygon."""
    images, annotations = [], []
    for image_id, folder in ((1, "a"), (2, "b")):
        images.append({"id": image_id, "file_name": f"{folder}/raw.tif", "height": 30, "width": 40})
        labels = _label_image(offset=image_id)
        for k in (1, 2):
            rle = mask_utils.encode(np.asfortranarray((labels == k).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "segmentation": rle, "iscrowd": 0})
        # id 3 as a polygon around pixels rows 20..27, cols 5..8 (pixel-edge coordinates)
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                            "segmentation": [[5, 20, 9, 20, 9, 28, 5, 28]], "iscrowd": 0})
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cell"}]}))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [2], "val": [1]}))
    return path, split


def _run(args):
    result = CliRunner().invoke(labels_command, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_coco_label_image_paints_rle_and_polygons(tmp_path):
    path, _ = _coco(tmp_path)
    labels = coco_label_image(json.loads(path.read_text()), 1)
    assert labels.dtype == np.uint32 and np.array_equal(labels, _label_image(offset=1))


def test_points_from_coco_with_split(tmp_path):
    coco, split = _coco(tmp_path)
    out = tmp_path / "out"
    result = _run(["--coco", coco, "--out", out, "--kind", "points", "--split", split, "--subset", "train"])
    assert "1 images, 3 cells" in result.output and "0.00 h" in result.output
    xy, point_labels = read_points(out / "raw_points.csv")
    assert point_labels is None
    assert np.allclose(xy[0], [9.5, 5.5])           # centroid of rows 3..8, cols 6..13
    manifest = json.loads((out / "labels_manifest.json").read_text())
    assert manifest["kind"] == "points" and manifest["seed"] == 0
    assert manifest["params"] == {"placement": "centroid", "jitter": 0.0}
    assert manifest["source"]["subset"] == "train"
    assert manifest["images"] == [{"image_id": 2, "file_name": "b/raw.tif", "stem": "raw", "n_cells": 3,
                                   "files": ["raw_points.csv"]}]


def test_box_points_all_images_unique_stems_and_seeded(tmp_path):
    coco, _ = _coco(tmp_path)
    args = ["--coco", coco, "--kind", "box-points", "--n-points", 4, "--seed", 5]
    result = _run(args + ["--out", tmp_path / "o1"])
    _run(args + ["--out", tmp_path / "o2"])
    # 2 images x 3 cells; 7 s per box + 0.9 s per point
    assert "2 images, 6 cells" in result.output
    manifest = json.loads((tmp_path / "o1" / "labels_manifest.json").read_text())
    assert manifest["annotation_hours"] == pytest.approx(6 * (7 + 4 * 0.9) / 3600)
    assert [e["stem"] for e in manifest["images"]] == ["a_raw", "b_raw"]
    first = (tmp_path / "o1" / "a_raw_boxpoints.json").read_text()
    assert first == (tmp_path / "o2" / "a_raw_boxpoints.json").read_text()
    cells = json.loads(first)["cells"]
    assert [c["id"] for c in cells] == [1, 2, 3]
    assert cells[1]["box"] == [19.5, 14.5, 29.5, 24.5]
    assert np.array(cells[1]["points"]).shape == (4, 2) and cells[1]["point_labels"] == [1, 1, 1, 1]


def test_foreground_kinds_from_label_dir(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    cv2.imwrite(str(folder / "img1.png"), _label_image().astype(np.uint8))
    out = tmp_path / "out"
    _run(["--label-dir", folder, "--out", out, "--kind", "foreground-locations"])
    foreground = cv2.imread(str(out / "img1_foreground.png"), cv2.IMREAD_UNCHANGED)
    assert foreground.dtype == np.uint8 and set(np.unique(foreground)) == {0, 255}
    assert np.array_equal(foreground > 0, _label_image() > 0)
    xy, _ = read_points(out / "img1_points.csv")
    assert xy.shape == (3, 2)
    _run(["--label-dir", folder, "--out", out, "--kind", "foreground-count"])
    assert json.loads((out / "img1_count.json").read_text())["count"] == 3
    manifest = json.loads((out / "labels_manifest.json").read_text())
    assert manifest["kind"] == "foreground-count" and "label_dir" in manifest["source"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_cli_usage_errors(tmp_path):
    coco, split = _coco(tmp_path)
    runner = CliRunner()
    both = runner.invoke(labels_command, ["--coco", str(coco), "--label-dir", str(tmp_path),
                                          "--out", str(tmp_path / "o"), "--kind", "points"])
    assert both.exit_code != 0 and "exactly one source" in both.output
    bad = runner.invoke(labels_command, ["--coco", str(coco), "--out", str(tmp_path / "o"), "--kind", "masks"])
    assert bad.exit_code != 0 and "masks" in bad.output


def test_points_io_roundtrip_and_formats(tmp_path):
    xy = np.array([[1.25, 2.0], [3.0, 4.5]])
    write_points_csv(tmp_path / "p.csv", xy, labels=np.array([1, 0]))
    back, labels = read_points(tmp_path / "p.csv")
    assert np.array_equal(back, xy) and labels.tolist() == [1, 0] and labels.dtype == np.int64
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")                  # no header
    assert np.array_equal(read_points(tmp_path / "n.csv")[0], [[1, 2], [3, 4]])
    write_json(tmp_path / "a.json", [{"x": 1, "y": 2, "label": 1}, {"x": 3, "y": 4, "label": 0}])
    back, labels = read_points(tmp_path / "a.json")
    assert np.array_equal(back, [[1, 2], [3, 4]]) and labels.tolist() == [1, 0]
    write_json(tmp_path / "b.json", {"points": [[5, 6]]})
    back, labels = read_points(tmp_path / "b.json")
    assert np.array_equal(back, [[5, 6]]) and labels is None
    (tmp_path / "bad.csv").write_text("x,y\n1,oops\n")
    with pytest.raises(ValueError, match=r"bad\.csv: non-numeric"):
        read_points(tmp_path / "bad.csv")


def test_read_label_image_rejects_float_and_colour(tmp_path):
    cv2.imwrite(str(tmp_path / "l.png"), _label_image())
    labels = read_label_image(tmp_path / "l.png")
    assert labels.dtype == np.uint32 and np.array_equal(labels, _label_image())
    import tifffile
    tifffile.imwrite(tmp_path / "f.tif", _label_image().astype(np.float32))
    with pytest.raises(ValueError, match=r"f\.tif: .*integers"):
        read_label_image(tmp_path / "f.tif")
    colour = np.zeros((30, 40, 3), np.uint8)
    colour[..., 0] = _label_image()
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    with pytest.raises(ValueError, match=r"c\.png: .*2-D"):
        read_label_image(tmp_path / "c.png")


def test_machine_labels_from_a_folder_of_nuclear_stain_images(tmp_path):
    from conftest import synthetic_nuclei
    images = tmp_path / "images"
    images.mkdir()
    image, truth, centres = synthetic_nuclei(shape=(128, 160), n=8, radius=7, seed=4)
    cv2.imwrite(str(images / "a.png"), np.clip(image, 0, 255).astype(np.uint8))
    (images / "broken.tif").write_bytes(b"not a tiff")
    result = CliRunner().invoke(labels_command, ["--images", str(images), "--out", str(tmp_path / "out"),
                                                 "--from-nuclei", "--foreground"])
    assert result.exit_code == 0, result.output
    assert "broken.tif" in result.output and "1 skipped" in result.output
    xy = read_points(tmp_path / "out" / "a_points.csv")[0]
    assert len(xy) == 8
    fg = cv2.imread(str(tmp_path / "out" / "a_foreground.png"), cv2.IMREAD_UNCHANGED) > 0
    assert ((fg & (truth > 0)).sum() / (fg | (truth > 0)).sum()) > 0.8
    assert all((tmp_path / "out" / f"a_foreground_{i}.png").exists() for i in range(1, 6))
    manifest = json.loads((tmp_path / "out" / "labels_manifest.json").read_text())
    assert manifest["annotation_hours"] == 0 and manifest["images"][0]["n_cells"] == 8
    bad = CliRunner().invoke(labels_command, ["--images", str(images), "--out", str(tmp_path / "o2")])
    assert bad.exit_code != 0 and "--from-nuclei" in bad.output
