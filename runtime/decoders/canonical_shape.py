"""Decoder of canonical-shape models: present instances → rendered at image resolution → containment
merge → label image, with each cell's interpretable parameters (centre, axes, orientation).

The encoder's grid outputs (stride `stride` network px) give, per grid cell and instance slot, presence
p(z), a centre offset and the lower-triangular L of X' = L·(p − c)/unit. The canonical shape is the
package's 88-weight MLP (asset "shape_mlp"), evaluated here with numpy only at pixels inside each
instance's support. Decodes at the image's scale."""
from __future__ import annotations

import numpy as np

from cellpoint.runtime.candidates import containment_merge, paste_candidates
from cellpoint.runtime.decoding import DecodeContext, Decoder, Instances, Params
from cellpoint.runtime.labels import relabel_sequential, remove_small_instances


class CanonicalShapeParams(Params):
    """stride: network px between grid cells. unit: the canonical radius in network px.
    presence_threshold: instances with p(z) below are dropped. mask_threshold: a pixel belongs to an
    instance where p(s)·p(z) reaches this. containment_merge: a smaller instance m merges into a bigger b
    when |b ∩ m|/|m| reaches this (None: no merging). min_area: network px², smaller instances are removed."""
    stride: int = 16
    unit: float = 12.0
    presence_threshold: float = 0.5
    mask_threshold: float = 0.5
    containment_merge: float | None = 0.5
    min_area: float = 8.0


def shape_log_prob(xy: np.ndarray, weights: dict) -> np.ndarray:
    """The implicit shape MLP: xy float (..., 2) canonical (x, y) → log p(s | x, y, r) float32 (...)."""
    xy = np.asarray(xy, np.float32)
    r = np.sqrt((xy ** 2).sum(-1, keepdims=True) + 1e-12)
    inp = np.concatenate([xy, r], -1)

    def linear(x, name):
        return x @ np.asarray(weights[name]["weight"], np.float32).T + np.asarray(weights[name]["bias"], np.float32)

    h = np.maximum(linear(inp, "fc1"), 0)
    h = np.maximum(linear(np.concatenate([inp, h], -1), "fc2"), 0)
    z = linear(np.concatenate([inp, h], -1), "fc3")[..., 0]
    return -(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))))  # −softplus, stable


def canonical_image(weights: dict, size: int = 129, extent: float = 2.0) -> np.ndarray:
    """p(s) on a size×size grid over [−extent, extent]² canonical units (rows = y) — the learned shape."""
    t = np.linspace(-extent, extent, size, dtype=np.float32)
    xy = np.stack(np.meshgrid(t, t, indexing="xy"), -1)
    return np.exp(shape_log_prob(xy, weights))


def support_radius(weights: dict, threshold: float, limit: float = 4.0, steps: int = 400) -> float:
    """Largest canonical radius where p(s) >= threshold in any direction (searched up to `limit`), plus
    one search step: every pixel an instance can claim lies inside this radius."""
    r = np.linspace(0, limit, steps, dtype=np.float32)
    angle = np.linspace(0, 2 * np.pi, 72, endpoint=False, dtype=np.float32)
    xy = np.stack([r[:, None] * np.cos(angle), r[:, None] * np.sin(angle)], -1)
    inside = (shape_log_prob(xy, weights) >= np.log(threshold)).any(1)
    return float(r[np.flatnonzero(inside).max()] + limit / steps) if inside.any() else 0.0


def grid_instances(maps: dict, stride: int) -> dict[str, np.ndarray]:
    """Flatten the grid maps into per-instance arrays, in network px.

    maps: presence (I,h,w), center_offset (2I,h,w) as (dx, dy) pairs, transform (3I,h,w) as (l11, l21,
    l22); stride: network px between grid cells. Returns pz (M,), cx, cy (M,), l11, l21, l22 (M,), M = I·h·w."""
    presence = np.asarray(maps["presence"], np.float32)
    i, h, w = presence.shape
    offset = np.asarray(maps["center_offset"], np.float32).reshape(i, 2, h, w)
    transform = np.asarray(maps["transform"], np.float32).reshape(i, 3, h, w)
    cy = np.arange(h, dtype=np.float32)[:, None] * stride + (stride - 1) / 2
    cx = np.arange(w, dtype=np.float32)[None, :] * stride + (stride - 1) / 2
    return {"pz": presence.ravel(), "cx": (offset[:, 0] + cx).ravel(), "cy": (offset[:, 1] + cy).ravel(),
            "l11": transform[:, 0].ravel(), "l21": transform[:, 1].ravel(), "l22": transform[:, 2].ravel()}


def instance_geometry(inst: dict, unit: float, pixel_scale: float) -> dict[str, np.ndarray]:
    """Interpretable parameters of each instance, in image px: centre (x, y), semi-axes of the ellipse
    the canonical unit circle maps to (major >= minor), orientation of the major axis (degrees, counter-
    clockwise from the image x axis, with y pointing down the image rows as displayed)."""
    n = inst["pz"].size
    linv = np.zeros((n, 2, 2), np.float64)  # image offset = unit · L⁻¹ · canonical
    linv[:, 0, 0] = 1 / inst["l11"]
    linv[:, 1, 0] = -inst["l21"] / (inst["l11"] * inst["l22"])
    linv[:, 1, 1] = 1 / inst["l22"]
    u, s, _ = np.linalg.svd(linv * unit * pixel_scale)
    angle = np.degrees(np.arctan2(-u[:, 1, 0], u[:, 0, 0]))  # rows grow downwards: flip y for display angle
    angle = (angle + 90) % 180 - 90
    return {"center_x": (inst["cx"] + 0.5) * pixel_scale - 0.5, "center_y": (inst["cy"] + 0.5) * pixel_scale - 0.5,
            "axis_major": s[:, 0], "axis_minor": s[:, 1], "orientation_deg": angle}


def render_candidates(inst: dict, weights: dict, unit: float, threshold: float, shape: tuple[int, int],
                      pixel_scale: float):
    """Render every instance at image resolution inside the ellipse that bounds its support.

    weights: the shape MLP's; unit: canonical radius (network px). Returns (pixel, owner, prob) keeping
    p(s)·p(z) >= threshold (see cellpoint.runtime.candidates)."""
    h, w = shape
    unit, threshold = float(unit), float(threshold)
    radius = support_radius(weights, threshold)
    l11, l21, l22 = inst["l11"].astype(np.float64), inst["l21"].astype(np.float64), inst["l22"].astype(np.float64)
    # half extents (network px) of {p : |L(p − c)| <= radius·unit}: radius·unit·‖row of L⁻¹‖
    ext_x = radius * unit / l11
    ext_y = radius * unit * np.sqrt((l21 / (l11 * l22)) ** 2 + 1 / l22 ** 2)
    to_image = lambda v: (v + 0.5) * pixel_scale - 0.5  # noqa: E731 — network px → image px
    x0 = np.clip(np.floor(to_image(inst["cx"] - ext_x)), 0, w).astype(np.int64)
    x1 = np.clip(np.ceil(to_image(inst["cx"] + ext_x)) + 1, 0, w).astype(np.int64)
    y0 = np.clip(np.floor(to_image(inst["cy"] - ext_y)), 0, h).astype(np.int64)
    y1 = np.clip(np.ceil(to_image(inst["cy"] + ext_y)) + 1, 0, h).astype(np.int64)
    width, height = np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)
    sizes = width * height
    owner = np.repeat(np.arange(sizes.size), sizes)
    if owner.size == 0:
        return np.zeros(0, np.int64), owner, np.zeros(0, np.float32)
    local = np.arange(owner.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    rows = y0[owner] + local // width[owner]
    cols = x0[owner] + local % width[owner]
    # image px → network px, then into each instance's canonical frame
    dx = ((cols + 0.5) / pixel_scale - 0.5 - inst["cx"][owner]) / unit
    dy = ((rows + 0.5) / pixel_scale - 0.5 - inst["cy"][owner]) / unit
    xy = np.stack([l11[owner] * dx, l21[owner] * dx + l22[owner] * dy], -1)
    prob = np.exp(shape_log_prob(xy, weights)) * inst["pz"][owner]
    keep = prob >= threshold
    return (rows[keep] * w + cols[keep]).astype(np.int64), owner[keep], prob[keep].astype(np.float32)


def decode_canonical_shape(context: DecodeContext, params: CanonicalShapeParams) -> Instances:
    """Grid outputs → instances at the image's size, with per-instance columns.

    Drops instances with p(z) < presence_threshold, renders the rest at image resolution, merges a smaller
    instance into a bigger one when |b ∩ m|/|m| >= containment_merge (0 or None: no merge), gives each
    pixel to the instance with the highest p(s)·p(z), removes instances under min_area (network px²).
    The columns (center_x, center_y, axis_major, axis_minor, orientation_deg, presence) describe each
    final instance's largest rendered member, in the order of the label ids, in image px."""
    weights = context.assets["shape_mlp"]
    pixel_scale = context.pixel_scale
    inst = grid_instances(context.maps, params.stride)
    present = inst["pz"] >= params.presence_threshold
    h, w = context.image_shape
    cx_img, cy_img = (inst["cx"] + 0.5) * pixel_scale - 0.5, (inst["cy"] + 0.5) * pixel_scale - 0.5
    present &= (cx_img >= -0.5) & (cx_img < w - 0.5) & (cy_img >= -0.5) & (cy_img < h - 0.5)
    inst = {k: v[present] for k, v in inst.items()}
    pixel, owner, prob = render_candidates(inst, weights, params.unit, params.mask_threshold, context.image_shape,
                                           pixel_scale)
    ratio = params.containment_merge
    if ratio:
        owner = containment_merge(pixel, owner, inst["pz"].size, float(ratio))[owner]
    labels, score = paste_candidates(pixel, owner, prob, context.image_shape)
    labels = remove_small_instances(labels, int(round(params.min_area * pixel_scale ** 2)))
    kept = np.unique(labels[labels > 0]).astype(np.int64) - 1
    geometry = instance_geometry(inst, float(params.unit), pixel_scale)
    columns = {k: v[kept] for k, v in geometry.items()}
    columns["presence"] = inst["pz"][kept].astype(np.float32)
    return Instances(relabel_sequential(labels), score, columns)


DECODER = Decoder("canonical_shape", CanonicalShapeParams, decode_canonical_shape, scale="image",
                  assets=("shape_mlp",))
