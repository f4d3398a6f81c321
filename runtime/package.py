"""Model packages: a folder with model.onnx, card.json (machine-readable), README.md and a sample.

`load_package` finds a package by bundled name or path, reads its card and checks the weights' sha256."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

CARD_FILE = "card.json"
CARD_FORMAT = "cellpoint-card/1"
DEFAULT_MODEL = "objectness-nuclei"


class PackageError(ValueError):
    """A model package that is missing, incomplete or fails its checksum; the message names the folder."""


@dataclass(frozen=True)
class ModelPackage:
    """A loaded package: its folder, its card (dict) and the path of its ONNX graph."""
    path: Path
    card: dict

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def onnx_path(self) -> Path:
        return self.path / self.card["weights"]["source"]


def bundled_dir() -> Path:
    """The folder that holds the bundled packages (inside the installed wheel, or the repo's model_cards/)."""
    return Path(str(resources.files("cellpoint.model_cards")))


def list_models() -> list[dict]:
    """Bundled packages as [{"name", "description", "path"}], sorted by name."""
    out = []
    for card_path in sorted(bundled_dir().glob(f"*/{CARD_FILE}")):
        card = json.loads(card_path.read_text())
        out.append({"name": card.get("name", card_path.parent.name),
                    "description": card.get("description", ""), "path": str(card_path.parent)})
    return out


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(model: str | Path | None) -> Path:
    """A bundled package name or a package folder → the package folder."""
    model = DEFAULT_MODEL if model is None else model
    candidate = Path(model)
    if candidate.is_dir():
        return candidate
    bundled = bundled_dir() / str(model)
    if bundled.is_dir():
        return bundled
    names = ", ".join(m["name"] for m in list_models()) or "none"
    raise PackageError(f"{model}: not a model package folder nor a bundled model (bundled: {names})")


def load_package(model: str | Path | None = None, verify: bool = True) -> ModelPackage:
    """Read a package's card and (by default) check its weights against the card's sha256."""
    folder = resolve(model)
    card_path = folder / CARD_FILE
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise PackageError(f"{folder}: no {CARD_FILE}; not a cellpoint model package") from None
    except json.JSONDecodeError as error:
        raise PackageError(f"{card_path}: not valid JSON ({error})") from None
    if card.get("format") != CARD_FORMAT:
        raise PackageError(f"{card_path}: unknown card format {card.get('format')!r} (expected {CARD_FORMAT})")
    package = ModelPackage(folder, card)
    # the main graph, then any further graphs a decoder runs (e.g. guided backpropagation)
    graphs = [(package.onnx_path, card["weights"]["sha256"])]
    graphs += [(folder / g["file"], g["sha256"]) for g in card.get("graphs", {}).values()]
    for path, expected in graphs:
        if not path.is_file():
            raise PackageError(f"{folder}: weights file {path.name} is missing")
        if verify:
            actual = sha256_file(path)
            if actual != expected:
                raise PackageError(f"{path}: checksum mismatch (card says {expected[:12]}…, file is "
                                   f"{actual[:12]}…); the weights are corrupt or were changed")
    return package
