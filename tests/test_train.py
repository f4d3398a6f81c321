"""Training end to end on synthetic nuclei: from clicks only, the network learns to segment them."""
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from cellpoint.training.annotations import write_points_csv  # noqa: E402
from cellpoint.training.methods.objectness.config import TrainConfig  # noqa: E402
from cellpoint.training.methods.objectness.train import build_network, prepare_example, train  # noqa: E402
from conftest import synthetic_nuclei  # noqa: E402


def test_prepare_example_rescales_to_the_canonical_diameter_from_clicks_alone():
    image, labels, centres = synthetic_nuclei(radius=12)
    ex = prepare_example(image, centres, None, TrainConfig(diameter=12.0))
    assert 20 < ex["diameter"] < 30                  # estimated from the objectness regions, true 25
    assert abs(ex["image"].shape[0] - image.shape[0] * ex["scale"]) <= 1
    assert (ex["point_label"] == 1).sum() >= len(centres)


def test_a_network_trained_on_clicks_learns_to_segment_synthetic_nuclei():
    torch.manual_seed(0)
    cfg = TrainConfig(steps=150, batch=4, crop=64, widths=(8, 16), diameter=18.0, lr=3e-3)
    examples = []
    for seed in range(3):
        image, _, centres = synthetic_nuclei(seed=seed)
        examples.append(prepare_example(image, centres, None, cfg))
    net = build_network(train(examples, cfg, log=lambda *_: None))
    image, labels, centres = synthetic_nuclei(seed=7)
    x = prepare_example(image, centres, None, cfg)["image"]
    with torch.no_grad():
        prob = torch.softmax(net(torch.from_numpy(x)[None, None]), 1)[0, 1].numpy()
    import cv2
    truth = cv2.resize(labels.astype(np.uint8), prob.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    pred = prob > 0.25
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.6, iou


def test_train_command_on_a_users_folder_of_images_and_clicks(tmp_path):
    from cellpoint.training.cli.train import train as train_command
    images, clicks = tmp_path / "images", tmp_path / "clicks"
    images.mkdir(), clicks.mkdir()
    for s in range(2):
        image, _, centres = synthetic_nuclei(seed=s)
        tifffile.imwrite(images / f"img{s}.tif", image)
        write_points_csv(clicks / f"img{s}_points.csv", centres[:, ::-1].astype(float))
    tifffile.imwrite(images / "unlabelled.tif", synthetic_nuclei(seed=5)[0])
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(train_command, ["--images", str(images), "--points", str(clicks), "--out", str(out),
                                                "--steps", "2", "--batch", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "unlabelled.tif" in result.output               # skipped, and said so
    from cellpoint.training.checkpoint import load_checkpoint
    ckpt = load_checkpoint(out)
    assert ckpt["label_kind"] == "points" and ckpt["decoder"]["params"]["foreground_threshold"] == 0.25
