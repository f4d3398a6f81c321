"""`cellpoint finetune`: the whole loop for a user's images in one command — fine-tune a package on the
user's clicks (`cellpoint train --init-from`), export the result as a package, and write a one-page report
of what changed.

It lives in export/ because it runs both training and export (training never imports export)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click

REPORT_DIR = "finetune_report"
# what a label costs where no `<stem>_corrections.json` states it (Point2Mask, table 1)
CLICK_SECONDS, BOX_SECONDS, BOX_CLICK_SECONDS = 1.0, 7.0, 0.9


@click.command("finetune")
@click.option("--from", "source", required=True, metavar="NAME|DIR|FILE",
              help="The model to start from: a bundled package (`cellpoint models`), a package folder or a checkpoint.")
@click.option("--images", "images_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Your images.")
@click.option("--points", "points_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="<stem>_points.csv click files for the images (napari's Correct cells writes them; "
              "point2mask: <stem>_boxpoints.json).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The new model package folder (replaced if it exists).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop training after this many minutes.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps [the fine-tuning default].")
@click.option("--lr", type=float, default=None, help="Learning rate [the fine-tuning default].")
@click.option("--hold-out", "hold_out", multiple=True, metavar="STEM",
              help="Keep this image out of training and keep the network that finds its clicks best (objectness).")
@click.option("--name", default=None, help="Package name [the --out folder's name].")
@click.option("--seed", default=0, show_default=True)
def finetune(source, images_dir, points_dir, out_dir, minutes, steps, lr, hold_out, name, seed):
    """Fine-tune a model on your clicked images and export it as a package with a before/after report.

    Example: cellpoint finetune --from objectness-nuclei --images my_images/ --points my_clicks/ --out my-model/"""
    try:
        import torch  # noqa: F401
        from cellpoint.export.cli import export
        from cellpoint.training.cli.train import train
        from cellpoint.training.sources import user_images
    except ImportError as error:
        raise click.ClickException(f"this command needs the training extra ({error.name} is missing): "
                                   "pip install torch==2.13.0 'cellpoint[train]'") from None
    images = [p for p in user_images(images_dir)]
    if not images:
        raise click.UsageError(f"{images_dir}: no images")
    with tempfile.TemporaryDirectory(prefix="cellpoint-finetune-") as tmp:
        checkpoint = Path(tmp) / "finetuned.pt"
        args = ["--init-from", str(source), "--images", str(images_dir), "--points", str(points_dir),
                "--out", str(checkpoint), "--seed", str(seed), "--workers", "1"]
        args += ["--minutes", str(minutes)] if minutes else []
        args += ["--steps", str(steps)] if steps else []
        args += ["--lr", str(lr)] if lr else []
        for stem in hold_out:
            args += ["--hold-out", stem]
        _invoke(train, args)
        _invoke(export, [str(checkpoint), "--out", str(out_dir), "--name", name or Path(out_dir).name,
                         "--description", f"fine-tuned from {source} on {images_dir}", "--sample", str(images[0]),
                         "--sample-source", f"{images[0].name} (the user's image)"])
    report = write_report(source, out_dir, images, points_dir, hold_out)
    click.echo(f"report: {report}")


def _invoke(command: click.Command, args: list[str]) -> None:
    """Run a cellpoint subcommand with `args`; its errors stop this one with the same message."""
    try:
        command.main(args, prog_name=f"cellpoint {command.name}", standalone_mode=False)
    except click.exceptions.Exit as done:
        if done.exit_code:
            raise click.ClickException(f"cellpoint {command.name} failed") from None


def annotation_seconds(points_dir: Path, stems: list[str]) -> tuple[float, str]:
    """Seconds spent annotating the images `stems`: the sum of their `<stem>_corrections.json`
    "annotation_seconds" (napari's Correct cells writes them); for the others 1 s a click of
    `<stem>_points.csv`, or 7 s a box + 0.9 s a click of `<stem>_boxpoints.json`. Returns (seconds, how it
    was counted)."""
    from cellpoint.training.annotations import read_points
    total, measured, estimated = 0.0, 0, 0
    for stem in stems:
        record = points_dir / f"{stem}_corrections.json"
        if record.exists():
            total += float(json.loads(record.read_text()).get("annotation_seconds", 0.0))
            measured += 1
            continue
        clicks, boxes = points_dir / f"{stem}_points.csv", points_dir / f"{stem}_boxpoints.json"
        if clicks.exists():
            total += CLICK_SECONDS * len(read_points(clicks)[0])
            estimated += 1
        elif boxes.exists():
            cells = json.loads(boxes.read_text()).get("cells", [])
            total += sum(BOX_SECONDS + BOX_CLICK_SECONDS * len(c.get("points", [])) for c in cells)
            estimated += 1
    how = (f"{measured} image(s) from the Correct cells record, {estimated} estimated at {CLICK_SECONDS:g} s a "
           f"click or {BOX_SECONDS:g} s a box + {BOX_CLICK_SECONDS:g} s a click in it")
    return total, how


def write_report(source: str, package: Path, images: list[Path], points_dir: Path, hold_out=()) -> Path:
    """<package>/finetune_report/index.html: per image the cells the starting model and the new one find,
    the clicks given, and both overlays (PNG files beside it); the annotation time spent. Returns its path."""
    from cellpoint.runtime.image_io import read_image, write_png
    from cellpoint.runtime.overlay import render_overlay
    from cellpoint.runtime.segmenter import Segmenter
    from cellpoint.training.annotations import read_points
    folder = Path(package) / REPORT_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # a checkpoint file has no package to segment with: the report then shows the new model only
    before = None if Path(source).is_file() else Segmenter(source, device="cpu")
    after = Segmenter(package, device="cpu")
    rows = []
    for path in images:
        image = read_image(path)
        clicks = points_dir / f"{path.stem}_points.csv"
        n_clicks = len(read_points(clicks)[0]) if clicks.exists() else None
        new = after.segment(image).labels
        write_png(folder / f"{path.stem}_after.png", render_overlay(image, new))
        old = None
        if before is not None:
            old = before.segment(image).labels
            write_png(folder / f"{path.stem}_before.png", render_overlay(image, old))
        rows.append({"image": path.name, "stem": path.stem, "clicks": n_clicks, "held_out": path.stem in hold_out,
                     "before": int(old.max()) if old is not None else None, "after": int(new.max())})
    seconds, how = annotation_seconds(points_dir, [r["stem"] for r in rows])
    card = json.loads((Path(package) / "card.json").read_text())
    summary = {"from": str(source), "package": str(package), "annotation_seconds": seconds, "counted": how,
               "train_seconds": card.get("training", {}).get("seconds"), "images": rows}
    (folder / "report.json").write_text(json.dumps(summary, indent=1))
    (folder / "index.html").write_text(_html(summary))
    return folder / "index.html"


def _html(summary: dict) -> str:
    """The report page (plain HTML, images beside it)."""
    import html
    rows = []
    for r in summary["images"]:
        cells = lambda v: "" if v is None else str(v)  # noqa: E731
        pictures = "".join(f'<figure><img src="{r["stem"]}_{when}.png" width="360"><figcaption>{when}</figcaption>'
                           "</figure>" for when in ("before", "after") if when == "after" or r["before"] is not None)
        rows.append(f"<tr><td>{html.escape(r['image'])}{' (held out)' if r['held_out'] else ''}</td>"
                    f"<td>{cells(r['clicks'])}</td><td>{cells(r['before'])}</td><td>{r['after']}</td>"
                    f"<td>{pictures}</td></tr>")
    minutes = summary["annotation_seconds"] / 60
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>cellpoint finetune report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border-bottom:1px solid #ccc;padding:4px 8px;vertical-align:top}}
figure{{display:inline-block;margin:0 8px 0 0}}</style></head><body>
<h1>Fine-tuned {html.escape(Path(summary['package']).name)}</h1>
<p>Started from <code>{html.escape(summary['from'])}</code>; training took {summary['train_seconds']} s.
Annotation time: {summary['annotation_seconds']:.0f} s ({minutes:.1f} min; {html.escape(summary['counted'])}).</p>
<table><tr><th>image</th><th>clicks</th><th>cells before</th><th>cells after</th><th>overlays</th></tr>
{''.join(rows)}</table></body></html>
"""
