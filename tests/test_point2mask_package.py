"""Point2Mask end to end on synthetic data: `cellpoint labels --kind box-points` → `cellpoint train --method
point2mask` on a user folder → `cellpoint export` (detector + mask graph, parity-checked) → the runtime's
`box_masks` decoder, with torch blocked."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from conftest import synthetic_nuclei  # noqa: E402
from cellpoint.training.methods.point2mask.config import Point2MaskConfig  # noqa: E402
from cellpoint.training.methods.point2mask.data import box_points_arrays, prepare_example  # noqa: E402
from cellpoint.training.methods.point2mask.train import train  # noqa: E402
from cellpoint.training.checkpoint import load_checkpoint  # noqa: E402
from cellpoint.training.weak_labels import box_points_from_labels  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def p2m_package(tmp_path_factory):
    from click.testing import CliRunner
    import tifffile
    from cellpoint.export.cli import export
    cfg = Point2MaskConfig(widths=(8, 8, 16, 16), channels=8, roi_size=7, diameter=18.0, crop=64, batch=2, steps=3)
    image, labels, _ = synthetic_nuclei(seed=5)
    boxes, points, point_labels, ids = box_points_arrays(box_points_from_labels(labels, 6, np.random.default_rng(0)))
    ckpt = train([prepare_example(image, boxes, points, point_labels, diameter=18.0, cfg=cfg)], cfg,
                 log=lambda *_: None)
    root = tmp_path_factory.mktemp("p2m")
    torch.save(ckpt, root / "p.pt")
    tifffile.imwrite(root / "sample.tif", synthetic_nuclei(shape=(90, 120), seed=6)[0])  # not a multiple of 16
    out = root / "tiny-p2m"
    result = CliRunner().invoke(export, [str(root / "p.pt"), "--out", str(out), "--sample", str(root / "sample.tif")])
    assert result.exit_code == 0, result.output
    return out


def test_package_has_the_detector_and_the_mask_graph(p2m_package):
    card = json.loads((p2m_package / "card.json").read_text())
    assert [o["name"] for o in card["outputs"]] == ["score_s4", "boxes_s4", "score_s8", "boxes_s8", "score_s16",
                                                    "boxes_s16", "features"]
    assert [o["stride"] for o in card["outputs"]] == [4, 4, 8, 8, 16, 16, 4]
    graph = card["graphs"]["masks"]
    assert (p2m_package / graph["source"]).is_file() and graph["parity_max_rel_diff"] < 1e-4
    from cellpoint.runtime.decoders import get_decoder
    decoder = card["decoder"]
    assert decoder["name"] == "box_masks" and get_decoder(decoder["name"]).scale == "network"
    assert decoder["params"]["max_detections"] == 3000 and card["architecture"]["mask_size"] == 14
    assert decoder["params"]["peak_radius"] == 1
    assert card["method"] == "point2mask" and card["label_kind"] == "box-points"
    assert "Point2Mask" in card["method_reference"]


def test_runtime_detections_match_the_torch_reference_decoding(p2m_package):
    from cellpoint.runtime import Segmenter
    from cellpoint.runtime.decoders.box_masks import BoxMasksParams, detect_boxes
    from cellpoint.training.methods.point2mask.reference import detect
    from cellpoint.training.methods.point2mask.train import export_modules
    seg = Segmenter(p2m_package, device="cpu")
    x, _ = seg._network_input(synthetic_nuclei(shape=(64, 96), seed=7)[0])
    maps = seg._predict(x)
    params = seg.with_decoder_params(score_threshold=0.005, peak_radius=0, max_proposals=40,
                                     nms_iou=0.3).decoder_params
    boxes, scores = detect_boxes(maps, params)
    detector, _ = export_modules(load_checkpoint(next(p2m_package.parent.glob("*.pt"))))
    with torch.no_grad():
        out = detector(torch.from_numpy(x[None]))
    ref_boxes, ref_scores = detect([(out[0], out[1]), (out[2], out[3]), (out[4], out[5])], BoxMasksParams(
        score_threshold=0.005, max_proposals=40, nms_iou=0.3))
    assert len(boxes) > 0 and len(boxes) == len(ref_boxes)
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-4)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-3)


def test_runtime_decodes_with_torch_blocked(p2m_package):
    code = textwrap.dedent(f"""
        import sys; sys.modules['torch'] = None
        import numpy as np
        from cellpoint.runtime import Segmenter
        seg = Segmenter(r"{p2m_package}")
        # every location proposes and every mask pixel is kept: the pipeline, not the (untrained) weights
        seg = seg.with_decoder_params(score_threshold=-1.0, peak_radius=0, max_proposals=60, nms_iou=0.2,
                                      mask_threshold=0.0, min_area=0, batch=16)
        image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
        labels, table = seg.segment(image)
        assert labels.shape == (70, 90) and labels.dtype == np.uint32 and labels.max() > 1
        assert len(table["detection_score"]) == len(table["id"]) == labels.max()
        assert not [m for m in sys.modules if m.startswith("cellpoint.training")]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_train_command_on_a_folder_of_box_point_files(tmp_path):
    from click.testing import CliRunner
    import tifffile
    from cellpoint.training.cli.labels import labels as labels_command
    from cellpoint.training.cli.train import train
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(2):
        image, labels, _ = synthetic_nuclei(seed=k)
        tifffile.imwrite(images / f"img{k}.tif", image)
        tifffile.imwrite(masks / f"img{k}.tif", labels.astype(np.uint16))
    (images / "unlabelled.tif").write_bytes((images / "img0.tif").read_bytes())
    runner = CliRunner()
    result = runner.invoke(labels_command, ["--label-dir", str(masks), "--kind", "box-points", "--n-points", "4",
                                            "--out", str(tmp_path / "labels")])
    assert result.exit_code == 0, result.output
    assert "12 cells, estimated annotation 0.04 h (10.6 s per cell; full masks 0.15 h" in result.output
    out = tmp_path / "p.pt"
    result = runner.invoke(train, ["--method", "point2mask", "--images", str(images), "--points",
                                   str(tmp_path / "labels"), "--steps", "2", "--batch", "1", "--workers", "1",
                                   "--cell-diameter", "18", "--mask-convs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the generic CLI describes a folder-only run's labels as its folder entry does
    assert "preparing 2 images (point2mask, box + points (the folder's files))" in result.output
    assert "skipped unlabelled.tif" in result.output
    ckpt = load_checkpoint(out)
    assert ckpt["method"] == "point2mask" and ckpt["label_kind"] == "box-points"
    assert ckpt["training_data"] == [{"folder": str(images), "labels": "box + points (the folder's files)"}]
    pretrained = dict(ckpt, training_data=[{"dataset": "dsb2018_bbbc038", "kinds": None, "split": "train",
                                            "labels": "full masks"}])
    torch.save(pretrained, tmp_path / "pretrained.pt")
    result = runner.invoke(train, ["--method", "point2mask", "--images", str(images), "--points",
                                   str(tmp_path / "labels"), "--steps", "1", "--batch", "1", "--workers", "1",
                                   "--cell-diameter", "18", "--init-from", str(tmp_path / "pretrained.pt"),
                                   "--point-grad", "0.5",
                                   "--out", str(tmp_path / "tuned.pt")])
    assert result.exit_code == 0, result.output
    tuned = load_checkpoint(tmp_path / "tuned.pt")
    assert tuned["training_data"][1:] == [dict(pretrained["training_data"][0], role="pretraining")]
    assert tuned["config"]["init_from"] == str(tmp_path / "pretrained.pt")
    assert tuned["config"]["loss"]["feature_grad"] == 0.5
    assert ckpt["model"]["mask_convs"] == 2 and tuned["model"]["mask_convs"] == 2   # the start's network
    result = runner.invoke(train, ["--method", "objectness", "--images", str(images), "--points", str(tmp_path),
                                   "--init-from", str(out), "--out", str(tmp_path / "o.pt")])
    assert result.exit_code != 0
    assert "is a point2mask model, not --method objectness" in result.output
    result = runner.invoke(train, ["--method", "point2mask", "--images", str(images), "--supervision", "full",
                                   "--out", str(out)])
    assert result.exit_code != 0 and "needs --masks" in result.output


def test_shared_data_jobs_derive_the_same_box_points_as_the_labels_command(shared_data, tmp_path):
    from cellpoint.training.datasets import list_samples
    from cellpoint.training.methods import TrainRequest, get_method
    spec = get_method("point2mask")
    request = TrainRequest(datasets=("usiigaci_phase_contrast",), seed=3, options={"points_per_cell": 2})
    cfg = spec.configure(request)
    assert cfg.n_points == 2
    jobs = spec.jobs(request, cfg)
    assert len(jobs) == len(list_samples("usiigaci_phase_contrast", "train"))
    kind, sample, _, seed, stem, _ = jobs[0]
    assert kind == "shared" and seed == 3 and stem.endswith("_raw")          # stems as `cellpoint labels` names them
    example = spec.prepare(jobs[0])
    assert example["points"].shape[1] == 2 and set(np.unique(example["point_labels"])) <= {0, 1}


def test_spec_usage_errors_defaults_and_label_descriptions(tmp_path):
    import click
    from cellpoint.training.methods import TrainRequest, get_method
    spec = get_method("point2mask")
    with pytest.raises(click.UsageError, match="point2mask --supervision weak with --images needs --points"):
        spec.configure(TrainRequest(images_dir=tmp_path))
    with pytest.raises(click.UsageError, match="point2mask --supervision full with --images needs --masks"):
        spec.configure(TrainRequest(images_dir=tmp_path, supervision="full"))
    request = TrainRequest(datasets=("x",), images_dir=tmp_path, points_dir=tmp_path, steps=7,
                           options={"points_per_cell": 4, "point_grad": 0.3, "mask_convs": None, "init_from": None})
    cfg = spec.configure(request)
    assert (cfg.mode, cfg.steps, cfg.batch, cfg.lr, cfg.diameter, cfg.n_points, cfg.mask_convs, cfg.init_from) == \
        ("points", 7, 6, 1e-3, 32.0, 4, 4, "")
    assert cfg.loss.feature_grad == 0.3
    assert spec.labels(request, cfg, False) == "box + 4 points"
    assert spec.labels(request, cfg, True) == "box + points (the folder's files)"
    full = TrainRequest(datasets=("x",), supervision="full", options={"points_per_cell": 6})
    cfg = spec.configure(full)
    assert cfg.mode == "full" and spec.labels(full, cfg, False) == spec.labels(full, cfg, True) == "full masks"
