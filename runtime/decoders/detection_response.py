"""Detection response → instances: the post-processing of WSISPDR (Nishimura, Ker & Bise, MICCAI 2019).

A U-Net trained on centroid positions outputs a cell-position likelihood map y. Thresholding y gives
one centre region S_u per detected cell; guided backpropagation seeded with y on S_u gives cell u's
contribution map g(u) (computed elsewhere, e.g. by an ONNX graph; here it is an array or a callable).
The maximum projection (equations 4-5) keeps, at each pixel, only the cell with the largest
contribution, and one binary graph cut per cell (its own projected map as foreground seeds, the other
cells' as background seeds, the image as data term) gives its region; the per-cell regions are fused
into one uint32 label image with the `postprocess` conventions (0 background, ids 1..N).
Decodes at the network's scale, running the package's graph "contributions" (guided backpropagation).
"""
from __future__ import annotations

from typing import Callable, Literal

import cv2
import numpy as np

from cellpoint.runtime.decoding import DecodeContext, Decoder, Instances, Params
from cellpoint.runtime.graphcut import binary_cut, otsu_level
from cellpoint.runtime.labels import relabel_sequential, remove_small_instances


class DetectionResponseParams(Params):
    """Detection: detection_threshold (centre regions are `likelihood > this`), detection_min_area (px,
    smaller regions dropped), binary_seeds (seed each cell's backward pass with 1 on its region instead of
    the likelihood). Contributions: window (px, each cell's guided backpropagation runs on a window this
    size around it), batch (cells per call of the graph). Graph cut (see `graphcut_cells`): seed_fraction,
    support_fraction, smoothness, sigma, margin, min_area, invert, level, data_weight. data_term: what the
    cut reads as "cell" (see `data_image`)."""
    detection_threshold: float = 0.3
    detection_min_area: int = 4
    binary_seeds: bool = False
    window: int = 128
    batch: int = 16
    data_term: Literal["intensity", "inverted", "texture"] = "intensity"
    seed_fraction: float = 0.5
    support_fraction: float = 0.05
    smoothness: float = 2.0
    sigma: float = 0.1
    margin: int = 6
    min_area: int = 20
    invert: bool = False
    level: float | None = None
    data_weight: float = 1.0


# ----------------------------------------------------------------------------------------- detection

def detect_cells(likelihood: np.ndarray, threshold: float, min_area: int = 1) -> np.ndarray:
    """Centre regions S_u: 8-connected components of `likelihood > threshold` (paper §3.2).

    likelihood: float (H,W) map of cell positions. Components with fewer than `min_area` pixels are
    dropped. Returns int32 (H,W): 0 elsewhere, ids 1..K in raster order of each component's first
    pixel (top to bottom, then left to right), so the numbering is deterministic."""
    lik = np.asarray(likelihood, dtype=np.float32)
    if lik.ndim != 2:
        raise ValueError(f"likelihood must be (H,W), got shape {lik.shape}")
    mask = (lik > threshold).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    keep = stats[1:, cv2.CC_STAT_AREA] >= min_area
    lut = np.zeros(n, np.int32)
    lut[1:][keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
    return lut[comp]


def region_seeds(regions: np.ndarray, likelihood: np.ndarray, binary: bool = False) -> np.ndarray:
    """Backward-pass seeds g^Out(u) (equation 1): channel u-1 holds the likelihood on S_u (region id
    u) and 0 elsewhere; with `binary`, 1 on S_u instead.

    regions: int (H,W) ids 0..K (0 = none); likelihood: float (H,W). Returns float32 (K,H,W),
    K = regions.max() (an empty (0,H,W) array without regions)."""
    reg = np.asarray(regions)
    if reg.ndim != 2 or np.shape(likelihood) != reg.shape:
        raise ValueError(f"regions {reg.shape} and likelihood {np.shape(likelihood)} must be the same (H,W)")
    k = int(reg.max(initial=0))
    seeds = np.zeros((k, reg.size), np.float32)
    idx = np.flatnonzero(reg)
    values = 1.0 if binary else np.asarray(likelihood, dtype=np.float32).ravel()[idx]
    seeds[reg.ravel()[idx].astype(np.intp) - 1, idx] = values
    return seeds.reshape((k,) + reg.shape)


# -------------------------------------------------------------------------------- maximum projection

def as_windows(contributions: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Contribution maps as (windows float32 (K,h,w), origins int (K,2)).

    Accepts dense maps (K,H,W) or (K,1,H,W) (every window is the whole image, origin (0,0)) or a pair
    (windows (K,h,w) or (K,1,h,w), origins (K,2) = image row, column of each window's top-left
    corner). A window may reach past the image; a map is zero outside its window."""
    if isinstance(contributions, tuple):
        windows, origins = contributions
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim == 4:
            windows = windows[:, 0]
        origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
    else:
        windows = np.asarray(contributions, dtype=np.float32)
        if windows.ndim == 4:
            windows = windows[:, 0]
        origins = np.zeros((windows.shape[0] if windows.ndim == 3 else 0, 2), np.int64)
    if windows.ndim != 3 or len(origins) != windows.shape[0]:
        raise ValueError(f"contributions must be (K,H,W) or ((K,h,w), (K,2)), got {windows.shape}")
    return windows, origins


def _window_on(windows: np.ndarray, origins: np.ndarray, u: int, ys: slice, xs: slice) -> np.ndarray:
    """Map u (zero outside its window) over the image region (ys, xs): float32 (len ys, len xs)."""
    out = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.float32)
    wy0, wx0 = int(origins[u, 0]), int(origins[u, 1])
    wh, ww = windows.shape[1:]
    y0, y1 = max(ys.start, wy0), min(ys.stop, wy0 + wh)
    x0, x1 = max(xs.start, wx0), min(xs.stop, wx0 + ww)
    if y0 < y1 and x0 < x1:
        out[y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = windows[u, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
    return out


def _inside(origins: np.ndarray, u: int, size: tuple[int, int], shape: tuple[int, int]) -> tuple[slice, slice]:
    """The part of window u that lies inside an image of `shape`, as image slices (may be empty)."""
    y0, x0 = int(origins[u, 0]), int(origins[u, 1])
    return (slice(max(y0, 0), max(min(y0 + size[0], shape[0]), max(y0, 0))),
            slice(max(x0, 0), max(min(x0 + size[1], shape[1]), max(x0, 0))))


def paste_windows(windows: np.ndarray, origins: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Dense maps float32 (K,H,W) from windows (K,h,w) at origins (K,2) (zero outside each window)."""
    full = (slice(0, shape[0]), slice(0, shape[1]))
    return np.stack([_window_on(windows, origins, u, *full) for u in range(len(windows))]) if len(windows) \
        else np.zeros((0,) + tuple(shape), np.float32)


def max_projection(contributions, normalize: bool = False,
                   shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum projection of the contribution maps (equations 4-5).

    contributions: float (K,H,W), g(u) for cells u = 0..K-1, or (windows, origins) as `as_windows`
    takes them (then `shape` = (H,W) is required). Negative values are clipped to 0 first (guided
    backprop keeps positive gradients; the authors' code clamps its output at 0).
    Returns owner int32 (H,W) = argmax_u g_i(u), and peak float32 (H,W) = that maximum, so C_i(u) =
    peak_i where owner_i == u, else 0. Ties go to the lowest index. Pixels where every map is 0 have
    peak 0 and owner 0: test `peak > 0` before trusting owner (with K = 0 both are all zero).
    Memory is O(H·W) plus the windows, whatever K.

    The maps are NOT normalised per cell by default: equation 4 compares the raw values g_i(k), and
    the authors' code takes the argmax of the raw maps (all divided by one common constant). A cell
    detected with a weak likelihood then has a weaker map and claims less of a contested pixel, which
    is the paper's behaviour. `normalize=True` divides each map by its own maximum first (for maps of
    very different scale, e.g. from binary seeds on cells of very different contrast)."""
    dense = not isinstance(contributions, tuple)
    windows, origins = as_windows(contributions)
    if dense:
        shape = windows.shape[1:]
    elif shape is None:
        raise ValueError("max_projection of windows needs the image shape")
    owner = np.zeros(shape, np.int32)
    peak = np.zeros(shape, np.float32)
    for u in range(windows.shape[0]):
        ys, xs = _inside(origins, u, windows.shape[1:], shape)
        g = np.maximum(_window_on(windows, origins, u, ys, xs), 0.0)
        if normalize:
            top = float(np.maximum(windows[u], 0.0).max(initial=0.0))
            g /= top if top > 0 else 1.0
        better = g > peak[ys, xs]  # strict: a tie stays with the lower index
        peak[ys, xs][better] = g[better]
        owner[ys, xs][better] = u
    return owner, peak


# ---------------------------------------------------------------------------------------- graph cut

def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """bool (h,w) mask with the background components that do not touch the window border filled."""
    n, comp = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    if n <= 2:
        return mask
    border = np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]]))
    hole = np.ones(n, bool)
    hole[border] = False
    hole[0] = False
    return mask | hole[comp]


def _seeded_parts(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 8-connected components of bool (h,w) `mask` that hold at least one pixel of `seeds`."""
    _, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    hit = np.zeros(comp.max() + 1, bool)
    hit[comp[seeds & mask]] = True
    hit[0] = False
    return hit[comp]


def graphcut_cells(image: np.ndarray, contributions, regions: np.ndarray | None,
                   params: DetectionResponseParams = DetectionResponseParams()) -> np.ndarray:
    """One binary graph cut per detected cell (paper §4), fused into one label image.

    image: float (H,W) normalised to [0,1], cells bright (or dark with `invert`). contributions: float
    (K,H,W) guided-backprop maps g(u), or (windows (K,h,w), origins (K,2)) as `as_windows` takes them
    (a map is zero outside its window); negatives clipped to 0. regions: int (H,W) centre regions S_u
    with ids 1..K matching the channels (from `detect_cells`), or None.
    For cell u, on the window of its support (g(u) > support_fraction · max g(u)) grown by `margin`:
      - foreground seeds: pixels of its projected map C(u) (owner u in `max_projection`) with
        g(u) >= seed_fraction · max g(u), plus S_u;
      - background seeds: pixels owned by another cell v with g(v) >= seed_fraction · max g(v) (the
        maximum projection of the other channels), the other centre regions S_v, pixels more than
        `margin` px from every cell's support, and window edges that lie inside the image;
      - data term (the paper's "saliency map", the image itself, inverted for phase contrast):
        data_weight · (s - level) is paid to label a pixel background if positive, its negative to
        label it foreground, with s the (inverted) image;
      - pairwise term on 4-neighbours: contrast-sensitive Potts, smoothness · exp(-(s_p - s_q)² / 2σ²).
    The foreground keeps the parts connected to its seeds, holes filled. Fusion: a pixel claimed by
    several cells goes to the claimant with the largest contribution there (the max-projection owner
    when it is among them; ties to the lowest index); afterwards each cell keeps only the parts of
    its pixels connected to its seeds, and instances under `min_area` are removed.
    params (`DetectionResponseParams`; the graph-cut fields, defaults given):
      seed_fraction 0.5: fraction of a cell's own peak contribution above which the pixels it owns
        are hard seeds (for its own cut) and hard background (for the others);
      support_fraction 0.05: below this fraction of its peak a cell's contribution is negligible;
        defines the window and the "far from any contribution" background;
      smoothness 2.0: λ, weight of the pairwise term relative to the data term;
      sigma 0.1: contrast scale of the pairwise term, in image units ([0,1]);
      margin 6: px added around the support to make the window (and distance beyond which pixels
        are background seeds);
      min_area 20: px, smaller instances are removed;
      invert False: use 1 - image (phase contrast, dark cells on bright background);
      level None: data-term threshold in [0,1]; None = Otsu threshold of the (inverted) image;
      data_weight 1.0: scale of the data term.
    Returns uint32 (H,W): cell u (channel u) gets id u+1; ids of cells left without pixels are
    absent (run `relabel_sequential` to close the gaps)."""
    p = params
    img = np.asarray(image, dtype=np.float32)
    windows, origins = as_windows(contributions)
    windows = np.maximum(windows, 0.0)
    if img.ndim != 2 or (not isinstance(contributions, tuple) and windows.shape[1:] != img.shape):
        raise ValueError(f"image (H,W) {img.shape} and contributions (K,H,W) {windows.shape} do not match")
    reg = None if regions is None else np.asarray(regions)
    if reg is not None and (reg.shape != img.shape or int(reg.max(initial=0)) > windows.shape[0]):
        raise ValueError(f"regions {reg.shape} with ids up to {int(reg.max(initial=0))} do not match "
                         f"contributions {windows.shape}")
    h, w = img.shape
    k = windows.shape[0]
    labels = np.zeros((h, w), np.uint32)
    if k == 0:
        return labels
    if p.invert:
        img = np.float32(1.0) - img
    level = otsu_level(img) if p.level is None else float(p.level)
    owner, peak = max_projection((windows, origins), shape=(h, w))
    top = windows.reshape(k, -1).max(axis=1)
    strong = peak >= p.seed_fraction * top[owner]
    strong &= peak > 0

    union = np.zeros((h, w), bool)
    boxes = []
    margin = int(p.margin)
    for u in range(k):
        wy, wx = _inside(origins, u, windows.shape[1:], (h, w))
        support = _window_on(windows, origins, u, wy, wx) > p.support_fraction * top[u]
        if top[u] <= 0 or not support.any():
            boxes.append(None)
            continue
        union[wy, wx] |= support
        rows = np.flatnonzero(support.any(axis=1)) + wy.start
        cols = np.flatnonzero(support.any(axis=0)) + wx.start
        boxes.append((slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, h)),
                      slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, w))))
    far = cv2.distanceTransform((~union).astype(np.uint8), cv2.DIST_L2, 3) > margin

    best = np.full((h, w), -1.0, np.float32)  # contribution of the current claimant
    fg_seeds = [None] * k
    for u, box in enumerate(boxes):
        if box is None:
            continue
        ys, xs = box
        own = owner[ys, xs] == u
        fg = own & strong[ys, xs]
        bg = ~own & strong[ys, xs]
        bg |= far[ys, xs]
        if reg is not None:
            centre = reg[ys, xs] == u + 1
            fg |= centre
            bg |= (reg[ys, xs] != 0) & ~centre
        edge = np.zeros(fg.shape, bool)
        edge[0] |= ys.start > 0
        edge[-1] |= ys.stop < h
        edge[:, 0] |= xs.start > 0
        edge[:, -1] |= xs.stop < w
        bg |= edge
        bg &= ~fg
        if not fg.any():
            continue
        cut = binary_cut(img[ys, xs], level, p.smoothness, p.sigma, p.data_weight, fg, bg)
        mask = _fill_holes(_seeded_parts(cut, fg))
        value = _window_on(windows, origins, u, ys, xs)
        take = mask & (value > best[ys, xs])
        best[ys, xs][take] = value[take]
        labels[ys, xs][take] = u + 1
        fg_seeds[u] = fg

    for u, fg in enumerate(fg_seeds):  # drop fragments cut off by other cells' claims
        if fg is None:
            continue
        ys, xs = boxes[u]
        lab = labels[ys, xs]
        mine = lab == u + 1
        lab[mine & ~_seeded_parts(mine, fg)] = 0
    return remove_small_instances(labels, int(p.min_area))


# ------------------------------------------------------------------------------------------ decoder

def decode_detection_response(maps: dict[str, np.ndarray], params: DetectionResponseParams,
                              contributions_fn: Callable[[np.ndarray, np.ndarray], object], image: np.ndarray):
    """The WSISPDR decoder: likelihood map → centre regions → guided-backprop seeds → contribution
    maps → maximum projection → per-cell graph cuts → fused, relabelled instances.

    maps: "likelihood" float (H,W). params: detection_threshold and detection_min_area for
    `detect_cells`, binary_seeds for the seed values, the graph-cut fields for `graphcut_cells`. contributions_fn(regions int32 (H,W) ids 1..K, seed_values float32 (H,W)) →
    the K cells' contribution maps, cell u seeded with seed_values on region u+1 (equation 1): dense
    (K,1,H,W), or (windows (K,1,h,w), origins (K,2)) as `windowed_contributions` returns them (memory
    independent of the image size); not called when nothing is detected. image: float (H,W) (or
    (H,W,C), averaged) in [0,1].
    Returns (labels uint32 (H,W) ids 1..N, score map float32 (H,W) = likelihood, columns
    {"detection_score": float32 (N,) peak likelihood in each instance's centre region, in label order}).
    """
    p = params
    likelihood = np.asarray(maps["likelihood"], dtype=np.float32)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2, dtype=np.float32)
    if img.shape != likelihood.shape:
        raise ValueError(f"image {img.shape} and likelihood {likelihood.shape} differ in size")
    regions = detect_cells(likelihood, p.detection_threshold, int(p.detection_min_area))
    k = int(regions.max(initial=0))
    if k == 0:
        return np.zeros(likelihood.shape, np.uint32), likelihood, {"detection_score": np.zeros(0, np.float32)}
    seed_values = np.ones_like(likelihood) if p.binary_seeds else likelihood
    contributions = contributions_fn(regions, seed_values)
    windows, origins = as_windows(contributions)
    if windows.shape[0] != k or (not isinstance(contributions, tuple) and windows.shape[1:] != likelihood.shape):
        raise ValueError(f"contributions_fn returned {windows.shape} maps, expected {k} of "
                         f"{likelihood.shape} or windows")
    labels = graphcut_cells(img, (windows, origins), regions, p)

    idx = np.flatnonzero(regions)
    detection_score = np.zeros(k + 1, np.float32)
    np.maximum.at(detection_score, regions.ravel()[idx], likelihood.ravel()[idx])
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=k + 1)[1:]) + 1
    return relabel_sequential(labels), likelihood, {"detection_score": detection_score[present]}


# ------------------------------------------------------------------------------- deployment helpers

def windowed_contributions(run_graph: Callable[[np.ndarray, np.ndarray], np.ndarray], image: np.ndarray,
                           regions: np.ndarray, seed_values: np.ndarray, window: int = 128, batch: int = 16,
                           multiple: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Guided-backprop contribution maps, each computed on a window centred on its cell.

    run_graph(images (B,C,w,w), seeds (B,1,w,w)) → (B,C,w,w) float32 (the package's graph, B cells
    each with its own image window). image: float32 (C,H,W) network input; regions: int (H,W) centre
    regions, ids 1..K; seed_values: float (H,W), cell u's seed is seed_values on region u+1. A cell's
    contribution is confined to the network's receptive field around it, so a window of a few cell
    diameters holds it; the cost per cell is then fixed instead of growing with the image, and so is
    the memory. The window is rounded up to `multiple` (the network's pooling factor) and starts on
    that grid; the image is reflect-padded so border cells get full windows. Away from a window's edge
    (beyond the receptive field) the result equals guided backpropagation on the whole image.
    Returns (windows float32 (K,1,w,w), the channel-summed contributions with zero outside the image,
    origins int64 (K,2): each window's top-left corner in image rows, columns)."""
    x = np.asarray(image, np.float32)
    c, h, w = x.shape
    reg = np.asarray(regions)
    k = int(reg.max(initial=0))
    values = np.asarray(seed_values, np.float32)
    m = max(1, int(multiple))
    win = -(-int(window) // m) * m
    # windows start on the `multiple` grid, so the network's pooling sees the same pixel groups as on the
    # whole image; padding by a whole window keeps every window inside the padded image
    padded = np.pad(x, ((0, 0), (win, win), (win, win)), mode="reflect" if min(h, w) > win else "symmetric")
    rows, cols = np.nonzero(reg)
    ids = reg[rows, cols].astype(np.intp)
    count = np.maximum(np.bincount(ids, minlength=k + 1), 1)
    centre_r = np.bincount(ids, rows, minlength=k + 1) / count
    centre_c = np.bincount(ids, cols, minlength=k + 1) / count
    origins = np.stack([np.floor((centre_r[1:] - win / 2) / m) * m,
                        np.floor((centre_c[1:] - win / 2) / m) * m], axis=1).astype(np.int64)
    out = np.zeros((k, 1, win, win), np.float32)
    for start in range(0, k, max(1, int(batch))):
        idx = range(start, min(k, start + int(batch)))
        images = np.stack([padded[:, y0 + win:y0 + 2 * win, x0 + win:x0 + 2 * win] for y0, x0 in origins[start:idx.stop]])
        seeds = np.zeros((len(idx), 1, win, win), np.float32)
        for j, i in enumerate(idx):
            ys, xs = _inside(origins, i, (win, win), (h, w))
            y0, x0 = origins[i]
            seeds[j, 0, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = np.where(
                reg[ys, xs] == i + 1, values[ys, xs], 0.0)
        result = np.asarray(run_graph(np.ascontiguousarray(images), seeds), np.float32).sum(axis=1)
        for j, i in enumerate(idx):
            ys, xs = _inside(origins, i, (win, win), (h, w))
            y0, x0 = origins[i]
            out[i, 0, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = \
                result[j, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out, origins


def data_image(image: np.ndarray, term: str = "intensity", radius: int = 3) -> np.ndarray:
    """The graph-cut's evidence of "cell" in [0,1] from a normalised (H,W) image.

    term "intensity": the image (bright cells, fluorescence); "inverted": 1 − image (dark cells);
    "texture": local standard deviation over a (2·radius+1)² window, divided by its 99th percentile
    (phase contrast, where cells differ from the background by texture rather than brightness)."""
    img = np.clip(np.asarray(image, np.float32), 0, 1)
    if term == "intensity":
        return img
    if term == "inverted":
        return 1.0 - img
    if term == "texture":
        size = (2 * radius + 1, 2 * radius + 1)
        mean = cv2.blur(img, size, borderType=cv2.BORDER_REFLECT)
        sq = cv2.blur(img * img, size, borderType=cv2.BORDER_REFLECT)
        std = np.sqrt(np.maximum(sq - mean * mean, 0))
        top = float(np.percentile(std, 99)) or 1.0
        return np.clip(std / top, 0, 1).astype(np.float32)
    raise ValueError(f"unknown data term {term!r} (intensity, inverted, texture)")


def _decode(context: DecodeContext, params: DetectionResponseParams) -> Instances:
    """The registered form: likelihood at the network's scale, guided backpropagation per cell window."""
    x = context.network_input

    def contributions(regions, seed_values):
        def run(images, seeds):
            return context.run_graph("contributions", {"image": images, "regions": seeds})
        return windowed_contributions(run, x, regions, seed_values, int(params.window), int(params.batch),
                                      int(context.multiple))
    return Instances(*decode_detection_response({"likelihood": context.maps["likelihood"][0]}, params,
                                                contributions, data_image(x[0], params.data_term)))


DECODER = Decoder("detection_response", DetectionResponseParams, _decode, scale="network",
                  graphs=("contributions",))
