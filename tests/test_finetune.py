"""Fine-tuning from a package (`cellpoint train --init-from`, `cellpoint finetune`): the weights a package's
ONNX graphs hold come back as each method's torch network, training starts from them with the BatchNorm
statistics fixed, the new checkpoint keeps the start's decoder, normalisation and scale model, a time budget
stops training, and a held-out image keeps the best network."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from conftest import synthetic_nuclei

BUNDLED = ["objectness-nuclei", "lacss-nuclei", "shape-nuclei", "wsispdr-cells-phase", "point2mask-cells-phase"]


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_package_gives_back_its_network(name):
    """The rebuilt network reproduces the package's graphs (checked inside, raising otherwise) and has
    every weight of the method's network."""
    from cellpoint.training.methods import get_method
    from cellpoint.training.package_weights import package_checkpoint
    checkpoint = package_checkpoint(name)
    net = get_method(checkpoint["method"]).build_network(checkpoint)   # loads the state dict strictly
    assert sum(p.numel() for p in net.parameters()) > 100_000
    assert checkpoint["start"]["package"] == name
    assert "scale_graph" in checkpoint and checkpoint["scale_graph"]["onnx"].dtype == torch.uint8
    assert all(entry["role"] == "pretraining" for entry in checkpoint["training_data"])


def test_a_package_whose_graph_is_not_its_cards_network_is_refused(tmp_path):
    from cellpoint.training.package_weights import PackageWeightsError, package_checkpoint
    from cellpoint.runtime.package import sha256_file
    folder = tmp_path / "pkg"
    shutil.copytree(_bundled("objectness-nuclei"), folder)
    card = json.loads((folder / "card.json").read_text())
    card["architecture"]["widths"] = [16, 32, 64, 128, 256]            # not the network model.onnx holds
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PackageWeightsError, match="pkg"):
        package_checkpoint(folder)
    card["architecture"]["widths"] = [8, 16, 32, 64, 128]
    (folder / "card.json").write_text(json.dumps(card))
    shutil.copyfile(_bundled("shape-nuclei") / "model.onnx", folder / "model.onnx")   # another method's graph
    card["weights"]["sha256"] = sha256_file(folder / "model.onnx")
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PackageWeightsError, match="pkg"):
        package_checkpoint(folder)


def test_batch_norm_statistics_stay_fixed_while_training():
    from cellpoint.training.package_weights import freeze_batch_norm
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    assert freeze_batch_norm(net) == 1
    before = net[1].running_mean.clone()
    net.train()
    assert net.training and not net[1].training
    loss = net(torch.randn(2, 1, 8, 8) * 5 + 3).sum()
    loss.backward()
    assert torch.equal(net[1].running_mean, before) and net[1].weight.grad is not None


def test_a_time_budget_stops_the_optimisation():
    from cellpoint.training.loop import cosine_schedule, optimise
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([param], lr=0.1)
    steps = []

    def step_loss(step):
        steps.append(step)
        time.sleep(0.02)
        return (param ** 2).sum(), {}
    optimise([param], step_loss, 10_000, opt, cosine_schedule(opt, 10_000, 0.1), lambda *_: None,
             budget_seconds=0.3)
    assert 3 <= len(steps) < 100
    assert opt.param_groups[0]["lr"] < 0.1      # decayed over the budget


def _bundled(name):
    from cellpoint.runtime.package import resolve
    return resolve(name)


def _user_folder(tmp_path, n=2):
    """images/, points/ (<stem>_points.csv), masks/ (<stem>.tif) of synthetic nuclei."""
    from cellpoint.training.annotations import write_points_csv
    folders = {k: tmp_path / k for k in ("images", "points", "masks")}
    for f in folders.values():
        f.mkdir()
    for s in range(n):
        image, labels, centres = synthetic_nuclei(shape=(128, 160), n=8, seed=s)
        tifffile.imwrite(folders["images"] / f"img{s}.tif", image)
        tifffile.imwrite(folders["masks"] / f"img{s}.tif", labels.astype(np.int32))
        write_points_csv(folders["points"] / f"img{s}_points.csv", centres[:, ::-1].astype(float))
    return folders


# the labels each method trains from in a user's folder ({points}, {masks}: the folders)
_LABELS = {"objectness-nuclei": ["--points", "{points}"], "wsispdr-cells-phase": ["--points", "{points}", "--cell-diameter", "18"],
           "shape-nuclei": ["--masks", "{masks}"], "lacss-nuclei": ["--supervision", "full", "--masks", "{masks}", "--cell-diameter", "18"],
           "point2mask-cells-phase": ["--supervision", "full", "--masks", "{masks}", "--cell-diameter", "18"]}


@pytest.mark.parametrize("name", BUNDLED)
def test_train_init_from_a_bundled_package_for_every_method(tmp_path, name):
    """One step at a vanishing learning rate: the new checkpoint holds the package's weights, its network,
    decoder, normalisation and scale model, and lists the package's training data as pretraining."""
    from cellpoint.training.checkpoint import load_checkpoint
    from cellpoint.training.cli.train import train
    from cellpoint.training.start import start_point
    folders = _user_folder(tmp_path)
    labels = [arg.format(**{k: str(v) for k, v in folders.items()}) for arg in _LABELS[name]]
    out = tmp_path / "tuned.pt"
    result = CliRunner().invoke(train, ["--init-from", name, "--images", str(folders["images"]), *labels,
                                        "--steps", "1", "--batch", "2", "--lr", "1e-12",
                                        "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    tuned, start = load_checkpoint(out), start_point(name)
    assert tuned["method"] == start["method"] and tuned["model"] == start["model"]
    assert tuned["decoder"] == start["decoder"] and tuned["normalization"] == start["normalization"]
    assert tuned["diameter"] == start["diameter"] and tuned["scale_graph"]["card"] == start["scale_graph"]["card"]
    assert tuned["config"]["init_from"] == name
    for key, value in start["state_dict"].items():
        assert torch.allclose(tuned["state_dict"][key].float(), value.float(), atol=1e-6), key
    roles = [entry.get("role") for entry in tuned["training_data"]]
    assert roles[0] is None and "pretraining" in roles          # the user's folder, then the package's data


def test_init_from_refuses_another_methods_model_and_an_unreadable_source(tmp_path):
    from cellpoint.training.cli.train import train
    folders = _user_folder(tmp_path, n=1)
    common = ["--images", str(folders["images"]), "--points", str(folders["points"]), "--out", str(tmp_path / "o.pt")]
    result = CliRunner().invoke(train, ["--method", "wsispdr", "--init-from", "objectness-nuclei", *common])
    assert result.exit_code != 0 and "is a objectness model, not --method wsispdr" in result.output
    result = CliRunner().invoke(train, ["--init-from", str(tmp_path / "nowhere"), *common])
    assert result.exit_code != 0 and "--init-from" in result.output and "nowhere" in result.output


def test_a_held_out_image_keeps_the_best_network(tmp_path):
    """A learning rate that wrecks the network: the held-out image's clicks keep the starting one."""
    from cellpoint.training.checkpoint import load_checkpoint
    from cellpoint.training.cli.train import train
    from cellpoint.training.start import start_point
    folders = _user_folder(tmp_path, n=3)
    out = tmp_path / "tuned.pt"
    result = CliRunner().invoke(train, ["--init-from", "objectness-nuclei", "--images", str(folders["images"]),
                                        "--points", str(folders["points"]), "--hold-out", "img2", "--steps", "6",
                                        "--val-every", "3", "--lr", "1.0", "--batch", "2", "--workers", "1",
                                        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "val F1@0.5 at step 0: 1.0000 (best so far)" in result.output
    tuned = load_checkpoint(out)
    assert tuned["selection"]["step"] == 0
    for key, value in start_point("objectness-nuclei")["state_dict"].items():
        assert torch.equal(tuned["state_dict"][key], value), key
    result = CliRunner().invoke(train, ["--init-from", "objectness-nuclei", "--images", str(folders["images"]),
                                        "--points", str(folders["points"]), "--hold-out", "img9", "--out", str(out)])
    assert result.exit_code != 0 and "img9" in result.output


def test_click_f1_counts_each_cell_once():
    from cellpoint.training.methods.objectness.train import click_f1
    labels = np.zeros((10, 10), np.int32)
    labels[1:4, 1:4], labels[6:9, 6:9] = 1, 2
    assert click_f1([labels], [np.array([[2, 2], [7, 7]])]) == 1.0
    # two clicks on cell 1, none on cell 2: one hit of two cells and two clicks
    assert click_f1([labels], [np.array([[2, 2], [3, 3]])]) == pytest.approx(0.5)


def test_finetune_command_writes_a_package_that_segments_like_its_start_and_a_report(tmp_path):
    """`cellpoint finetune` at a vanishing learning rate: the exported package finds the cells its starting
    package finds, carries its scale model and decoder, and the report counts the clicks' time."""
    from cellpoint.export.finetune import finetune
    from cellpoint.runtime.image_io import read_image
    from cellpoint.runtime.segmenter import Segmenter
    folders = _user_folder(tmp_path)
    out = tmp_path / "my-model"
    result = CliRunner().invoke(finetune, ["--from", "objectness-nuclei", "--images", str(folders["images"]),
                                           "--points", str(folders["points"]), "--out", str(out), "--steps", "1",
                                           "--lr", "1e-12"])
    assert result.exit_code == 0, result.output
    card, start = json.loads((out / "card.json").read_text()), json.loads((_bundled("objectness-nuclei") /
                                                                            "card.json").read_text())
    assert card["decoder"] == start["decoder"] and card["scale"] == start["scale"]
    assert card["refine_diameter"] == start["refine_diameter"]
    image = read_image(folders["images"] / "img0.tif")
    mine = Segmenter(out, device="cpu").segment(image).labels
    theirs = Segmenter("objectness-nuclei", device="cpu").segment(image).labels
    np.testing.assert_array_equal(mine, theirs)
    report = json.loads((out / "finetune_report" / "report.json").read_text())
    assert report["annotation_seconds"] == 16.0          # 2 images × 8 clicks at 1 s
    assert [r["after"] for r in report["images"]] == [int(Segmenter(out, device="cpu").segment(
        read_image(folders["images"] / f"img{s}.tif")).labels.max()) for s in range(2)]
    assert (out / "finetune_report" / "img0_before.png").exists() and (out / "finetune_report" / "index.html").exists()


def test_the_keep_start_loss_is_zero_at_the_start_and_pulls_back_to_it():
    from cellpoint.training.methods.objectness.loss import keep_start_loss
    start = torch.randn(2, 3, 8, 8)
    assert float(keep_start_loss(start.clone(), start)) == pytest.approx(0.0, abs=1e-6)
    moved = (start + torch.randn(2, 3, 8, 8)).requires_grad_()
    loss = keep_start_loss(moved, start)
    loss.backward()
    assert float(loss) > 0
    stepped = moved.detach() - 0.1 * moved.grad
    assert float(keep_start_loss(stepped, start)) < float(loss)


def test_the_report_counts_annotation_time_from_records_clicks_and_boxes(tmp_path):
    from cellpoint.export.finetune import annotation_seconds
    from cellpoint.training.annotations import write_points_csv
    (tmp_path / "a_corrections.json").write_text(json.dumps({"annotation_seconds": 12.5}))
    write_points_csv(tmp_path / "a_points.csv", np.zeros((40, 2)))          # the record wins over its clicks
    write_points_csv(tmp_path / "b_points.csv", np.zeros((3, 2)))
    (tmp_path / "c_boxpoints.json").write_text(json.dumps({"cells": [{"box": [0, 0, 4, 4], "points": [[1, 1], [2, 2]],
                                                                      "point_labels": [1, 0]}]}))
    seconds, how = annotation_seconds(tmp_path, ["a", "b", "c", "missing"])
    assert seconds == pytest.approx(12.5 + 3 + 7 + 1.8)
    assert how.startswith("1 image(s) from the Correct cells record, 2 estimated")
