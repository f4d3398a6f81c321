"""A LACSS checkpoint exported by `cellpoint export` (two graphs, parity-checked) and decoded by the runtime
with torch blocked."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
from cellpoint.training.methods.lacss.config import LacssConfig  # noqa: E402
from cellpoint.training.methods.lacss.data import prepare_example  # noqa: E402
from cellpoint.training.methods.lacss.train import train  # noqa: E402
from cellpoint.training.weak_labels import foreground_and_locations  # noqa: E402


@pytest.fixture(scope="module")
def lacss_package(tmp_path_factory):
    from click.testing import CliRunner
    import tifffile
    from conftest import synthetic_nuclei
    from cellpoint.export.cli import export
    cfg = LacssConfig(widths=(8, 8, 16, 16), features=8, head_width=8, aux_width=4, diameter=18.0, window=32,
                      crop=64, batch=2, steps=3)
    image, labels, _ = synthetic_nuclei(seed=5)
    fg, xy = foreground_and_locations(labels)
    ckpt = train([prepare_example(image, xy[:, ::-1], foreground=fg, cfg=cfg)], cfg, log=lambda *_: None)
    root = tmp_path_factory.mktemp("lacss")
    torch.save(ckpt, root / "l.pt")
    tifffile.imwrite(root / "sample.tif", image)
    out = root / "tiny-lacss"
    result = CliRunner().invoke(export, [str(root / "l.pt"), "--out", str(out), "--sample", str(root / "sample.tif")])
    assert result.exit_code == 0, result.output
    return out


def test_package_has_the_location_graph_and_the_instance_graph(lacss_package):
    card = json.loads((lacss_package / "card.json").read_text())
    assert [o["name"] for o in card["outputs"]] == ["score", "offsets", "features"]
    assert [o["stride"] for o in card["outputs"]] == [4, 4, 1]
    graph = card["graphs"]["instances"]
    assert (lacss_package / graph["source"]).is_file() and graph["parity_max_rel_diff"] < 1e-4
    assert card["decoder"]["name"] == "location_masks" and card["decoder"]["params"]["window"] == 32
    assert "aux" not in json.dumps(card["weights"])  # the aux net stays in training


def test_runtime_decodes_with_torch_blocked(lacss_package):
    code = textwrap.dedent(f"""
        import sys; sys.modules['torch'] = None
        import numpy as np
        from cellpoint.runtime import Segmenter
        seg = Segmenter(r"{lacss_package}")
        # every grid cell proposes (threshold below any probability) and every window pixel is kept
        seg = seg.with_decoder_params(score_threshold=-1.0, min_distance=12.0, mask_threshold=0.0, min_area=0)
        image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
        labels, table = seg.segment(image)
        assert labels.shape == (70, 90) and labels.dtype == np.uint32 and labels.max() > 1
        assert len(table["location_score"]) == len(table["id"]) == labels.max()
        assert (table["location_x"] >= -1).all() and (table["location_x"] <= 91).all()
        assert not [m for m in sys.modules if m.startswith("cellpoint.training")]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
