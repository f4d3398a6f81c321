"""The model card: machine-readable card.json (bioimage.io-like fields) and a human-readable README.md."""
from __future__ import annotations

import datetime as _dt

from cellpoint.runtime.package import CARD_FORMAT

# Licence of each shared data set (from its SOURCE.md); a card lists those of its training data.
DATASET_LICENCES = {
    "dsb2018_bbbc038": "CC0 1.0 (Kaggle Data Science Bowl 2018 / BBBC038, Broad Institute)",
    "coelho2009_u2os_nih3t3": "no licence stated by the source; research use with citation "
                              "(Coelho, Shariff, Murphy, ISBI 2009)",
    "livecell": "CC BY-NC 4.0 (LIVECell; non-commercial)",
    "usiigaci_phase_contrast": "MIT (Usiigaci, OIST)",
    "neurips22_cellseg_samples": "NeurIPS 2022 Cell Segmentation challenge terms",
    "stardist_bundled_2d": "CC0 (from DSB 2018, shipped in stardist, BSD-3-Clause)",
}

METHOD_TEXT = {
    "objectness": ("Point-supervised segmentation with objectness regularisation "
                   "(Li, Dey, Bermond, von der Emde, Curcio, Ach, Gerig)"),
    "canonical_shape": ("Explainable weakly-supervised nuclei segmentation by canonical shape learning and "
                        "transformation (Costa, Gaudio, Campilho, Cardoso)"),
    "point2mask": ("Point2Mask: a weakly supervised approach for cell segmentation using point annotation "
                   "(Khalid, Schmeisser, Koochali, Munir, Edlund, Jackson, Trygg, Sjögren, Dengel, Ahmed)"),
}


def build_card(checkpoint: dict, name: str, description: str, sha256: str, samples: list[dict],
               metrics: dict, parity: float, tiling: dict, outputs: list[dict],
               refine_diameter: bool = False) -> dict:
    """The card.json contents for a package exported from `checkpoint`; refine_diameter: the runtime's
    default for re-running each image at its measured cell size."""
    training_data = []
    for entry in checkpoint.get("training_data", []):
        item = dict(entry)
        if "dataset" in entry:
            item["licence"] = DATASET_LICENCES.get(entry["dataset"], "see the data set's SOURCE.md")
        training_data.append(item)
    return {
        "format": CARD_FORMAT,
        "name": name,
        "description": description,
        "created": _dt.date.today().isoformat(),
        "method": checkpoint["method"],
        "method_reference": METHOD_TEXT.get(checkpoint["method"], checkpoint["method"]),
        "label_kind": checkpoint["label_kind"],
        "license": "MIT (weights); see training_data for the data licences",
        "weights": {"source": "model.onnx", "sha256": sha256, "format": "onnx", "opset": 17,
                    "parity_max_abs_diff": parity},
        "inputs": [{"name": "image", "axes": "bcyx", "channels": checkpoint["model"]["in_channels"],
                    "dtype": "float32",
                    "preprocessing": checkpoint["normalization"]}],
        "outputs": outputs,
        "object_diameter_px": checkpoint["diameter"],
        "refine_diameter": bool(refine_diameter),
        "pixel_size_um": None,
        "tiling": tiling,
        "decoder": checkpoint["decoder"],
        "architecture": {**checkpoint["model"],
                         "parameters": sum(int(v.numel()) for v in checkpoint["state_dict"].values()
                                           if v.dtype.is_floating_point)},
        "training": {"config": checkpoint.get("config", {}), "seconds": round(checkpoint.get("train_seconds", 0))},
        "training_data": training_data,
        "samples": samples,
        "metrics": metrics,
    }


def _metric_rows(metrics: dict) -> list[str]:
    keys = [("AP", "mask AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("f1_50", "F1@0.5"), ("f1_mean", "mean F1"),
            ("mean_dice", "mean Dice"), ("fnr_50", "FNR@0.5")]
    rows = ["| data set (val) | images | diameter px | " + " | ".join(k[1] for k in keys) + " |",
            "|---|---|---|" + "---|" * len(keys)]
    for dataset, m in metrics.items():
        rows.append(f"| {dataset} | {m.get('n_images', '')} | {m.get('diameter_px') or ''} | "
                    + " | ".join(f"{m[k]:.3f}" if isinstance(m.get(k), float) else "" for k, _ in keys) + " |")
    return rows


def render_readme(card: dict, notes: str = "") -> str:
    """The human-readable card (markdown)."""
    lines = [f"# {card['name']}", "", card["description"], "",
             f"- Method: {card['method_reference']} — `{card['method']}`, trained from **{card['label_kind']}**.",
             f"- Network: {card['architecture']['arch']} widths {card['architecture']['widths']}, "
             f"{card['architecture']['parameters']:,} parameters; input {card['inputs'][0]['channels']} channel(s), "
             f"percentile normalisation ({card['inputs'][0]['preprocessing']['low']}–"
             f"{card['inputs'][0]['preprocessing']['high']}).",
             f"- Expected cell diameter: {card['object_diameter_px']} px (pass `--diameter` for other sizes)"
             + ("; by default each image is segmented again at the median size of the cells found "
                "(`--fixed-diameter` turns that off)." if card.get("refine_diameter") else "."),
             f"- Decoder: `{card['decoder']['name']}` {dict((k, v) for k, v in card['decoder'].items() if k != 'name')}.",
             f"- Weights: `model.onnx`, sha256 `{card['weights']['sha256']}`; onnxruntime vs PyTorch max |Δ| "
             f"{card['weights']['parity_max_abs_diff']:.2g} on the sample.",
             "", "## Training data", ""]
    for item in card["training_data"]:
        what = item.get("dataset", item.get("folder"))
        kinds = f" ({', '.join(item['kinds'])})" if item.get("kinds") else ""
        role = " (pretraining)" if item.get("role") == "pretraining" else ""
        lines.append(f"- {what}{kinds}, {item.get('split', '')} split{role} — licence: "
                     f"{item.get('licence', 'user data')}")
    for fig in card.get("figures", []):
        lines += ["", f"![{fig['file']}]({fig['file']})", "", fig["caption"]]
    if card["metrics"]:
        lines += ["", "## Metrics (val split, measured with the runtime on this package)", ""] + _metric_rows(card["metrics"])
    lines += ["", "## Samples", ""]
    for s in card["samples"]:
        lines.append(f"- `{s['input']}` → `{s['output']}` ({s['source']}; licence {s['licence']})")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"
