"""The import rules of pyproject.toml's [tool.importlinter] contracts hold (the runtime never imports training,
export or torch; training never imports export; primitives never import decoders; decoders and methods are
independent of each other), and every package folder is listed for the wheel."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    pytest.importorskip("importlinter")
    result = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                             "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken" in result.stdout, result.stdout


def test_every_package_folder_is_listed_for_the_wheel():
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools]")[1].split("[tool.setuptools.package-dir]")[0]
    listed = set(re.findall(r'"(cellpoint\.[\w.]+)"', section))
    roots = {"runtime": "cellpoint.runtime", "training": "cellpoint.training", "export": "cellpoint.export",
             "napari_plugin": "cellpoint.napari"}
    found = set()
    for folder, package in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package,) + parts))
    assert found <= listed, sorted(found - listed)
