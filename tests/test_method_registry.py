"""A method is one folder and one registry line: a toy sixth method trains, exports and segments through the
same commands as the five real ones; no code outside the registries compares method or decoder names."""
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

pytest.importorskip("torch")

from conftest import synthetic_nuclei  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_a_toy_method_registered_with_one_line_trains_exports_and_segments(tmp_path, monkeypatch):
    from cellpoint.export.cli import export
    from cellpoint.runtime import Segmenter
    from cellpoint.training import methods
    from cellpoint.training.cli.train import _command
    from cellpoint.training.evaluation import match_instances

    monkeypatch.setitem(methods._BUILT_IN, "toy", "toy_method")      # the one registry line
    monkeypatch.delitem(methods._LOADED, "toy", raising=False)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for seed in range(3):
        image, labels, _ = synthetic_nuclei(seed=seed)
        tifffile.imwrite(images / f"im{seed}.tif", image)
        tifffile.imwrite(masks / f"im{seed}.tif", labels.astype(np.uint16))
    checkpoint, package = tmp_path / "toy.pt", tmp_path / "toy-package"
    trained = CliRunner().invoke(_command(), ["--method", "toy", "--images", str(images), "--masks", str(masks),
                                              "--steps", "300", "--workers", "1", "--out", str(checkpoint)])
    assert trained.exit_code == 0, trained.output
    exported = CliRunner().invoke(export, [str(checkpoint), "--out", str(package)])
    assert exported.exit_code == 0, exported.output

    image, truth, _ = synthetic_nuclei(seed=9)
    labels, table = Segmenter(package).segment(image)
    iou = match_instances(truth, labels)                            # (6 true cells, found cells)
    found = int((iou.max(axis=1) > 0.5).sum()) if iou.size else 0
    assert found >= 5 and len(table["id"]) <= 7, (found, len(table["id"]))


def test_no_code_outside_the_registries_compares_method_or_decoder_names():
    names = "objectness|canonical[-_]shape|wsispdr|lacss|point2mask|maps_and_seeds|detection_response|" \
            "location_masks|box_masks"
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*['"]({names})['"]|['"]({names})['"]\s*(==|!=)""")
    hits = []
    for folder in ("runtime", "training", "export", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
