"""The runtime never imports torch: prove it in a fresh interpreter where importing torch fails."""
import subprocess
import sys
import textwrap


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    prelude = "import sys\nsys.modules['torch'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_runtime_imports_and_segments_with_torch_blocked(tiny_package):
    result = _run_blocked(f"""
        import numpy as np, tifffile
        import cellpoint.runtime
        from cellpoint.runtime import Segmenter
        from cellpoint.runtime.cli import main
        seg = Segmenter(r"{tiny_package}")
        labels, table = seg.segment(np.random.default_rng(0).random((80, 90)).astype(np.float32))
        assert labels.shape == (80, 90)
        leaked = sorted(m for m, v in sys.modules.items() if v is not None and m.startswith(("torch", "cellpoint.training", "cellpoint.export")))
        assert not leaked, leaked
        print("ok")
    """)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_segment_command_works_with_torch_blocked(tiny_package, tmp_path):
    import tifffile
    from conftest import synthetic_nuclei
    tifffile.imwrite(tmp_path / "a.tif", synthetic_nuclei()[0])
    result = _run_blocked(f"""
        from cellpoint.runtime.cli import main
        main(["segment", r"{tmp_path / 'a.tif'}", "--model", r"{tiny_package}", "--out", r"{tmp_path / 'out'}"])
    """)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a_labels.tif").is_file()
