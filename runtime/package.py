"""Model packages: a folder with card.json, the ONNX graphs it names, README.md and samples.

`load_package` finds a package by bundled name or path and checks it once: the card's fields and types,
the decoder against the registry and its parameters against the decoder's declaration, that every file
the card names lies inside the folder and exists, and the sha256 of every file the runtime reads (its
graphs, assets and precision variants). Every
failure is one `PackageError` naming the package and the field; later code trusts the result."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from cellpoint.runtime.card import CARD_FORMAT, Card, CardError, parse_card, validate_params
from cellpoint.runtime.decoders import DECODERS
from cellpoint.runtime.decoding import Decoder, Params
from cellpoint.runtime.errors import PackageError

CARD_FILE = "card.json"
DEFAULT_MODEL = "objectness-nuclei"

__all__ = ["CARD_FILE", "CARD_FORMAT", "DEFAULT_MODEL", "ModelPackage", "PackageError", "bundled_dir",
           "list_models", "load_package", "sha256_file"]


@dataclass(frozen=True)
class ModelPackage:
    """A loaded, checked package: its folder, its card, its decoder with typed parameters, and the
    contents of its assets by role."""
    path: Path
    card: Card
    decoder: Decoder
    params: Params
    assets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def onnx_path(self) -> Path:
        """The main graph (float32)."""
        return self.path / self.card.weights.source

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions the main graph ships in: "fp32", then the card's variants ("int8", "fp16")."""
        return ("fp32", *sorted(self.card.variants))

    def main_graph_path(self, precision: str = "fp32") -> Path:
        """The main graph at `precision` (one of `precisions`); PackageError naming the package and the
        precisions it has otherwise."""
        if precision == "fp32":
            return self.onnx_path
        if precision not in self.card.variants:
            raise PackageError(f"{self.path}: package {self.name!r} has no {precision} variant of its main graph "
                               f"(it has: {', '.join(self.precisions)})")
        return self.path / self.card.variants[precision].source

    def graph_path(self, role: str) -> Path:
        """The further graph a decoder runs as `role`."""
        return self.path / self.card.graphs[role].source


def bundled_dir() -> Path:
    """The folder that holds the bundled packages (inside the installed wheel, or the repo's model_cards/)."""
    return Path(str(resources.files("cellpoint.model_cards")))


def list_models() -> list[dict]:
    """Bundled packages as [{"name", "description", "path"}], sorted by name (cards are not checked here)."""
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
    """Read and check a package (see the module). verify: also check the sha256 of each file the runtime reads
    (weights, graphs, assets, variants) against the card."""
    folder = resolve(model)
    card_path = folder / CARD_FILE
    try:
        raw = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise PackageError(f"{folder}: no {CARD_FILE}; not a cellpoint model package") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PackageError(f"{card_path}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise PackageError(f"{card_path}: not valid JSON ({error})") from None
    try:
        card, inline_assets = parse_card(raw)
        decoder = DECODERS.get(card.decoder.name)
        if decoder is None:
            raise CardError(f"decoder.name: unknown decoder {card.decoder.name!r} "
                            f"(known: {', '.join(sorted(DECODERS))})")
        params = validate_params(card.decoder.params, decoder.params)
        _check_roles(card, decoder, inline_assets)
    except CardError as error:
        raise PackageError(f"{folder}: {CARD_FILE}: {error}") from None
    for where, relative in _referenced_files(card):
        _check_file(folder, where, relative)
    if verify:
        checked = [("weights", card.weights)] + [(f"graphs.{r}", g) for r, g in card.graphs.items()] \
            + [(f"assets.{r}", a) for r, a in card.assets.items()] \
            + [(f"variants.{p}", v) for p, v in card.variants.items()]
        for where, entry in checked:
            actual = sha256_file(folder / entry.source)
            if actual != entry.sha256:
                raise PackageError(f"{folder / entry.source}: checksum mismatch ({where}.sha256 says "
                                   f"{entry.sha256[:12]}…, the file is {actual[:12]}…); the file is corrupt or "
                                   "was changed")
    assets = dict(inline_assets)
    for role, entry in card.assets.items():
        try:
            assets[role] = json.loads((folder / entry.source).read_text())
        except (OSError, ValueError) as error:
            raise PackageError(f"{folder}: {CARD_FILE}: assets.{role}: cannot read {entry.source} ({error})") from None
    return ModelPackage(folder, card, decoder, params, assets)


def _check_roles(card: Card, decoder: Decoder, inline_assets: dict) -> None:
    """Every further graph and asset the decoder runs is named by the card."""
    if card.scale is not None and card.scale.graph not in card.graphs:
        raise CardError(f"scale.graph: the scale estimate runs graph {card.scale.graph!r}, which the card's graphs "
                        "do not name")
    missing = [r for r in decoder.graphs if r not in card.graphs]
    if missing:
        raise CardError(f"graphs: decoder {decoder.name!r} runs graph(s) {', '.join(missing)}, which the card "
                        "does not name")
    missing = [r for r in decoder.assets if r not in card.assets and r not in inline_assets]
    if missing:
        raise CardError(f"assets: decoder {decoder.name!r} reads asset(s) {', '.join(missing)}, which the card "
                        "does not name")


def _referenced_files(card: Card) -> list[tuple[str, str]]:
    """(card field, relative path) of every file the card names."""
    files = [("weights.source", card.weights.source)]
    files += [(f"graphs.{r}.source", g.source) for r, g in card.graphs.items()]
    files += [(f"assets.{r}.source", a.source) for r, a in card.assets.items()]
    files += [(f"variants.{p}.source", v.source) for p, v in card.variants.items()]
    for k, s in enumerate(card.samples):
        files += [(f"samples[{k}].input", s.input), (f"samples[{k}].output", s.output)]
    files += [(f"figures[{k}].file", f.file) for k, f in enumerate(card.figures)]
    return files


def _check_file(folder: Path, where: str, relative: str) -> None:
    """`relative` names an existing file inside `folder`: no absolute path, no '..', no link out of it."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or PureWindowsPath(relative).is_absolute() or ".." in pure.parts \
            or "\\" in relative:
        raise PackageError(f"{folder}: {CARD_FILE}: {where}: {relative!r} is not a path inside the package "
                           "(absolute paths and '..' are refused)")
    path = folder / relative
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        raise PackageError(f"{folder}: {CARD_FILE}: {where}: {relative!r} leads out of the package folder") from None
    if not path.is_file():
        raise PackageError(f"{folder}: {CARD_FILE}: {where}: file {relative} is missing")
