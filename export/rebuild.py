"""Change an existing model package in place: a copy is edited, its sample outputs and metrics made again and
checked, then swapped in (the folder is never left half-changed)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from cellpoint.export.card import render_readme
from cellpoint.runtime.image_io import read_image, write_labels_tif
from cellpoint.runtime.package import CARD_FILE, load_package


def rebuild_package(folder, edit: Callable[[dict, Path], dict], eval_specs=(), remeasure_all: bool = False,
                    keep_metrics: bool = False) -> dict:
    """Apply `edit(card, work_folder) -> card` to a copy of the package in `folder`, then: the samples'
    expected labels made again; the card's `domain` set from its training data (when the shared data are at
    hand); each data set spec of `eval_specs` measured on val with no diameter ("<spec> (no diameter)") and,
    with `remeasure_all` (the network's input changed), also at the data set's diameter, every earlier
    metric dropped and any precision variants removed (made from the old input, make them again with
    `cellpoint.export.precision`); README re-rendered (its Notes kept). keep_metrics: the card's metrics are left as `edit`
    leaves them (the fp32 network is unchanged; `eval_specs` is not measured). An exception raised by `edit`
    leaves the package as it was. Returns the new card."""
    from cellpoint.runtime.segmenter import Segmenter
    from cellpoint.training.datasets import shared_data_present
    from cellpoint.training.validate import diameter_metrics, no_diameter_metrics, training_domain
    folder = Path(folder)
    load_package(folder)                                   # refuse a broken package before touching it
    work = folder.with_name(folder.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(folder, work)
    try:
        card = edit(json.loads((work / CARD_FILE).read_text()), work)
        if remeasure_all:
            for variant in card.pop("variants", {}).values():
                (work / variant["source"]).unlink(missing_ok=True)
        (work / CARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        segmenter = Segmenter(work, device="cpu")
        for sample in card.get("samples", []):
            labels = segmenter.segment(read_image(work / sample["input"])).labels
            write_labels_tif(work / sample["output"], labels)
            sample["instances"] = int(labels.max())
        if shared_data_present():
            card["domain"] = training_domain(card.get("training_data", [])) or card.get("domain")
        if card.get("domain") is None:
            card.pop("domain", None)
        if not keep_metrics:
            if remeasure_all:
                card["metrics"] = diameter_metrics(segmenter, eval_specs)
            else:
                card["metrics"] = {k: v for k, v in card.get("metrics", {}).items()
                                   if not k.endswith("(no diameter)")}
            card["metrics"].update(no_diameter_metrics(segmenter, eval_specs))
        (work / CARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        readme = (work / "README.md").read_text() if (work / "README.md").exists() else ""
        notes = readme.split("\n## Notes\n", 1)[1].strip() if "\n## Notes\n" in readme else ""
        (work / "README.md").write_text(render_readme(card, notes))
        load_package(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    folder.rename(old)
    work.rename(folder)
    shutil.rmtree(old)
    return card
