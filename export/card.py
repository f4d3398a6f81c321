"""The model card: machine-readable card.json (bioimage.io-like fields) and a human-readable README.md."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from cellpoint.runtime.card import CARD_FORMAT

# Licence of each shared data set (from its SOURCE.md); a card lists those of its training data.
DATASET_LICENCES = {
    "dsb2018_bbbc038": "CC0 1.0 (Kaggle Data Science Bowl 2018 / BBBC038, Broad Institute)",
    "coelho2009_u2os_nih3t3": "no licence stated by the source; research use with citation "
                              "(Coelho, Shariff, Murphy, ISBI 2009)",
    "livecell": "CC BY-NC 4.0 (LIVECell; non-commercial)",
    "usiigaci_phase_contrast": "MIT (Usiigaci, OIST)",
    "neurips22_cellseg_samples": "NeurIPS 2022 Cell Segmentation challenge terms",
    "stardist_bundled_2d": "CC0 (from DSB 2018, shipped in stardist, BSD-3-Clause)",
    "dsb2018_bbbc038_extra": "CC0 1.0 (Kaggle Data Science Bowl 2018 / BBBC038, Broad Institute)",
    "usiigaci_phase_contrast_extra": "MIT (Usiigaci, OIST)",
}


def build_card(checkpoint: dict, name: str, description: str, weights: dict, graphs: dict, assets: dict,
               outputs: list[dict], tiling: dict, samples: list[dict], metrics: dict, figures: list[dict],
               reference: str, refine_diameter: bool = False) -> dict:
    """card.json (format cellpoint-card/2, see docs/model-package.md) for a package exported from
    `checkpoint`. weights: {source, sha256, opset, parity_max_rel_diff}; graphs/assets: {role: {source,
    sha256, ...}}; refine_diameter: the runtime's default for re-running each image at its measured size."""
    training_data = []
    for entry in checkpoint.get("training_data", []):
        item = dict(entry)
        if "dataset" in entry:
            dataset = str(entry["dataset"]).partition(":")[0]
            item["licence"] = DATASET_LICENCES.get(dataset, "see the data set's SOURCE.md")
        training_data.append(item)
    card = {
        "format": CARD_FORMAT,
        "name": name,
        "description": description,
        "created": _dt.date.today().isoformat(),
        "method": checkpoint["method"],
        "method_reference": reference,
        "label_kind": checkpoint["label_kind"],
        "license": "MIT (weights); see training_data for the data licences",
        "weights": {"format": "onnx", **weights},
        "inputs": [{"name": "image", "axes": "bcyx", "channels": checkpoint["model"]["in_channels"],
                    "dtype": "float32", "preprocessing": checkpoint["normalization"],
                    "polarity": checkpoint.get("polarity", "any")}],
        "outputs": outputs,
        "object_diameter_px": checkpoint["diameter"],
        "refine_diameter": bool(refine_diameter),
        "pixel_size_um": None,
        "tiling": tiling,
        "decoder": checkpoint["decoder"],
        "postprocess": checkpoint.get("postprocess", {}),
        "graphs": graphs,
        "assets": assets,
        "architecture": {**checkpoint["model"],
                         "parameters": sum(int(v.numel()) for v in checkpoint["state_dict"].values()
                                           if v.dtype.is_floating_point)},
        "training": {"config": checkpoint.get("config", {}), "seconds": round(checkpoint.get("train_seconds", 0))},
        "training_data": training_data,
        "samples": samples,
        "metrics": metrics,
    }
    if figures:
        card["figures"] = figures
    return card


def _metric_rows(metrics: dict) -> list[str]:
    keys = [("AP", "mask AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("f1_50", "F1@0.5"), ("f1_mean", "mean F1"),
            ("mean_dice", "mean Dice"), ("fnr_50", "FNR@0.5")]
    rows = ["| data set (val) | images | diameter px | " + " | ".join(k[1] for k in keys) + " |",
            "|---|---|---|" + "---|" * len(keys)]
    for dataset, m in metrics.items():
        diameter = "estimated" if dataset.endswith("(no diameter)") else m.get("diameter_px") or ""
        rows.append(f"| {dataset} | {m.get('n_images', '')} | {diameter} | "
                    + " | ".join(f"{m[k]:.3f}" if isinstance(m.get(k), float) else "" for k, _ in keys) + " |")
    return rows


def _variant_rows(card: dict) -> list[str]:
    """The README's precision variants: each file, and its val F1@0.5 and mask AP next to fp32's."""
    lines = []
    for precision, v in sorted(card["variants"].items()):
        loss = v.get("f1_50_loss")
        lines.append(f"- `{v['source']}` ({precision}, {v.get('conversion', {}).get('tool', '')}): "
                     + (f"loses at most {loss:.4f} F1@0.5 on val" if loss is not None else "not measured on val")
                     + "; the runtime picks it by default on "
                     + ("the CPU" if precision == "int8" else "a GPU") + " (`precision=\"fp32\"` turns that off).")
    measured = [(p, k) for p, v in sorted(card["variants"].items()) for k in v.get("metrics", {})]
    if measured:
        lines += ["", "| data set (val) | precision | F1@0.5 | mask AP | F1@0.5 fp32 | mask AP fp32 |",
                  "|---|---|---|---|---|---|"]
        for precision, key in measured:
            m, ref = card["variants"][precision]["metrics"][key], card["metrics"].get(key, {})
            lines.append(f"| {key} | {precision} | " + " | ".join(
                f"{x[k]:.3f}" if isinstance(x.get(k), float) else "" for x, k in
                ((m, "f1_50"), (m, "AP"), (ref, "f1_50"), (ref, "AP"))) + " |")
    return lines


def render_readme(card: dict, notes: str = "") -> str:
    """The human-readable card (markdown)."""
    lines = [f"# {card['name']}", "", card["description"], "",
             f"- Method: {card['method_reference']} — `{card['method']}`, trained from **{card['label_kind']}**.",
             f"- Network: {card['architecture']['arch']}"
             + (f" widths {card['architecture']['widths']}" if "widths" in card["architecture"] else "")
             + f", {card['architecture']['parameters']:,} parameters; input {card['inputs'][0]['channels']} channel(s), "
             f"{card['inputs'][0]['preprocessing']['kind']} normalisation ({card['inputs'][0]['preprocessing']['low']}–"
             f"{card['inputs'][0]['preprocessing']['high']})"
             + (f", images with a bright background inverted (polarity {card['inputs'][0]['polarity']})"
                if card["inputs"][0].get("polarity", "any") != "any" else "") + ".",
             f"- Cell diameter the network sees: {card['object_diameter_px']} px. "
             + ("With no `--diameter`, each image's cell diameter is estimated by the package's scale model "
                "(`scale.onnx`) and the image rescaled to it. " if card.get("scale") else
                "Pass `--diameter` (the cells' diameter in your images, px) for other sizes. ")
             + ("By default each image is then segmented again at the median size of the cells found "
                "(`--fixed-diameter` turns that off)." if card.get("refine_diameter") else ""),
             f"- Decoder: `{card['decoder']['name']}` {card['decoder']['params']}"
             + (f"; then {card['postprocess']}" if any(v is not None for v in card.get("postprocess", {}).values())
                else "") + ".",
             f"- Weights: `{card['weights']['source']}`, sha256 `{card['weights']['sha256']}`; onnxruntime vs PyTorch "
             f"max |Δ|/max(1, |torch|) {card['weights']['parity_max_rel_diff']:.2g} on the sample."]
    files = [f"`{e['source']}` (graph `{role}`)" for role, e in card.get("graphs", {}).items()]
    files += [f"`{e['source']}` (asset `{role}`)" for role, e in card.get("assets", {}).items()]
    if files:
        lines.append("- Further files the decoder reads, each under its sha256 in card.json: " + ", ".join(files) + ".")
    lines += ["", "## Training data", ""]
    for item in card["training_data"]:
        what = item.get("dataset", item.get("folder"))
        kinds = f" ({', '.join(item['kinds'])})" if item.get("kinds") else ""
        role = f" ({item['role']})" if item.get("role") else ""
        lines.append(f"- {what}{kinds}, {item.get('split', '')} split{role} — licence: "
                     f"{item.get('licence', 'user data')}")
    if card.get("domain"):
        domain = card["domain"]
        lines += ["", f"Image kinds: {', '.join(domain['image_kinds'])}; cell diameters "
                  f"{domain['cell_diameter_px'][0]:g}–{domain['cell_diameter_px'][1]:g} px ({domain.get('note', '')})."]
    for fig in card.get("figures", []):
        lines += ["", f"![{fig['file']}]({fig['file']})", "", fig["caption"]]
    if card["metrics"]:
        lines += ["", "## Metrics (val split, measured with the runtime on this package)", ""] + _metric_rows(card["metrics"])
    if card.get("variants"):
        lines += ["", "## Precision variants", ""] + _variant_rows(card)
    lines += ["", "## Samples", ""]
    for s in card["samples"]:
        lines.append(f"- `{s['input']}` → `{s['output']}` ({s['source']}; licence {s['licence']})")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"


def write_card_schema(path=None) -> Path:
    """Write the JSON Schema of cards of the built-in decoders to runtime/card.schema.json (or `path`)."""
    import json

    from cellpoint.runtime import card as runtime_card
    from cellpoint.runtime.decoders import BUILT_IN
    path = Path(path) if path else Path(runtime_card.__file__).with_name("card.schema.json")
    path.write_text(json.dumps(runtime_card.card_schema({d.name: d for d in BUILT_IN}), indent=1) + "\n")
    return path
