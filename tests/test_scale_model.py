"""The scale model end to end on synthetic discs: trained (a few steps), attached to a package, run by the
runtime when no diameter is given; and its training tiles show cells at the size they claim."""
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import synthetic_nuclei  # noqa: E402
from cellpoint.training.scale_model import ScaleConfig, image_diameter, sample_tile, train_scale  # noqa: E402


def _examples():
    out = []
    for seed in range(3):
        image, labels, _ = synthetic_nuclei(shape=(128, 160), seed=seed)
        norm = (image - image.min()) / (image.max() - image.min())
        out.append({"image": norm.astype(np.float32), "foreground": labels > 0, "diameter": image_diameter(labels)})
    return [out]


def test_training_tiles_show_cells_at_the_size_their_target_says():
    import cv2
    [examples] = _examples()
    cfg = ScaleConfig(crop=128)
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(40):
        ex = examples[0]
        tile, u, presence = sample_tile(ex["image"], ex["foreground"], ex["diameter"], cfg, rng)
        assert tile.shape == (128, 128) and presence.shape == (8, 8) and abs(u) <= cfg.octaves
        if not -1.5 < u < 1.0:
            continue
        # the discs, whichever way the tile was inverted, as the pixels far from the background level
        background = np.median(tile)
        mask = (np.abs(tile - background) > 0.5 * np.abs(tile - background).max()).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        x, y, w, h, area = stats[1:].T
        whole = (x > 0) & (y > 0) & (x + w < 128) & (y + h < 128) & (area > 4)
        if whole.sum() >= 2:
            measured = 2 * np.sqrt(np.median(area[whole]) / np.pi)
            assert measured == pytest.approx(cfg.canonical * 2 ** u, rel=0.3), (u, measured)
            checked += 1
    assert checked >= 5


def test_a_scale_model_attached_to_a_package_estimates_the_diameter(tiny_package, tmp_path):
    from cellpoint.export.scale import attach_scale_model
    from cellpoint.runtime import Segmenter
    checkpoint = train_scale(_examples(), ScaleConfig(steps=3, batch=2), log=lambda *_: None)
    torch.save(checkpoint, tmp_path / "scale.pt")
    package = tmp_path / "pkg"
    shutil.copytree(tiny_package, package)
    card = attach_scale_model(package, tmp_path / "scale.pt")
    assert card["scale"]["graph"] == "scale" and (package / card["graphs"]["scale"]["source"]).is_file()
    assert json.loads((package / "card.json").read_text())["scale"]["canonical_px"] == 24.0
    seg = Segmenter(package)
    assert seg.estimates_diameter
    image = synthetic_nuclei(seed=4)[0]
    result = seg.segment(image, refine_diameter=False)
    estimate = seg.estimate_diameter(image)
    if estimate is None:            # a 3-step model may see no cells: then the card's diameter is used
        assert result.diameter_source == "model" and result.diameter == seg.diameter
    else:
        assert result.diameter_source == "estimated" and result.diameter == pytest.approx(estimate)
    assert seg.segment(image, diameter=30, refine_diameter=False).diameter_source == "given"
