"""The README is short and its Python API example runs as pasted; the package contract documents every card
field."""
import re
import subprocess
import sys
from pathlib import Path

import msgspec

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_is_short():
    assert len(README) < 15_000, len(README)


def test_readme_python_api_example_runs_as_pasted_without_torch():
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None\n" + code], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "objectness-nuclei" in result.stdout and "cells" in result.stdout


def test_the_package_contract_documents_every_card_field():
    from cellpoint.runtime.card import Card
    doc = (REPO / "docs" / "model-package.md").read_text()
    missing = [f.encode_name for f in msgspec.structs.fields(Card) if f"`{f.encode_name}`" not in doc]
    assert not missing, missing


def test_the_readme_loop_uses_commands_and_options_that_exist():
    """Every `cellpoint` line of "Your own model in minutes" names a real subcommand and real options."""
    from cellpoint.runtime.cli import main
    section = README.split("## Your own model in minutes", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#")[0].split() for line in block.strip().splitlines()]
    assert len(lines) == 5
    commands = [words for words in lines if words[0] == "cellpoint"]
    assert {words[1] for words in commands} >= {"finetune", "segment"}
    for words in commands:
        command = main.get_command(None, words[1])
        assert command is not None, words[1]
        known = {opt for param in command.params for opt in param.opts}
        assert {w for w in words if w.startswith("--")} <= known, words
