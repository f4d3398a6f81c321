"""Rewrite an older package's card.json in the current format, in place (the runtime reads old cards by
migrating them in memory; this makes the migration permanent and puts inline data under a checksum).

    python -m cellpoint.export.upgrade PACKAGE_FOLDER [...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cellpoint.runtime.card import CARD_FORMAT, CARD_FORMAT_V1, migrate_v1
from cellpoint.runtime.image_io import atomic_write
from cellpoint.runtime.package import CARD_FILE, load_package, sha256_file


def upgrade_package(folder) -> bool:
    """Rewrite `folder`'s card as cellpoint-card/2: migrated fields, inline assets written to
    `<role>.json` files with their sha256. Returns False if it already was /2. The result is loaded and
    checked before returning (PackageError otherwise)."""
    folder = Path(folder)
    raw = json.loads((folder / CARD_FILE).read_text())
    if raw.get("format") == CARD_FORMAT:
        return False
    if raw.get("format") != CARD_FORMAT_V1:
        raise ValueError(f"{folder}: cannot upgrade a card of format {raw.get('format')!r}")
    card, inline = migrate_v1(raw)
    assets = dict(card.get("assets", {}))
    for role, content in inline.items():
        path = folder / f"{role}.json"
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(content))
        assets[role] = {"source": path.name, "sha256": sha256_file(path)}
    card["assets"] = assets
    with atomic_write(folder / CARD_FILE) as tmp:
        tmp.write_text(json.dumps(card, indent=1, ensure_ascii=False))
    load_package(folder)
    return True


def main(argv: list[str]) -> int:
    for folder in argv:
        print(f"{folder}: {'upgraded to ' + CARD_FORMAT if upgrade_package(folder) else 'already ' + CARD_FORMAT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
