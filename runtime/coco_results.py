"""Label images to COCO instance-segmentation results, with COCO compressed RLE written in numpy.

The RLE format is the one pycocotools uses: pixels are read in column-major (Fortran) order, the counts
alternate 0-run, 1-run, 0-run, ... starting with a (possibly empty) 0-run, and the counts are packed into a
string of 5-bit groups. This module needs only numpy, so the runtime can write results without pycocotools.
"""
from __future__ import annotations

import numpy as np

# Every count fits in 64 bits, i.e. at most 13 five-bit groups.
_MAX_GROUPS = 13


def encode_rle(mask: np.ndarray) -> dict:
    """Encode one binary mask as COCO compressed RLE.

    mask: (H, W) array, nonzero = foreground (any dtype; bool expected).
    Returns {"size": [H, W], "counts": str}, byte-for-byte what pycocotools.mask.encode gives (as str).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    height, width = mask.shape
    flat_index = np.flatnonzero(mask.ravel(order="F"))
    run_first, run_length = _runs_of_sorted_indices(flat_index)
    counts, counts_per_mask = _counts_from_runs(run_first, run_length, [run_first.size], height * width)
    return {"size": [int(height), int(width)], "counts": _pack_counts(counts, counts_per_mask)[0]}


def labels_to_coco_results(labels: np.ndarray, image_id: int, scores: dict | None = None,
                           category_id: int = 1) -> list[dict]:
    """One COCO result per instance of a label image.

    labels: (H, W) integer array; 0 (and negatives) are background, each id > 0 is one instance (its pixels
        need not be connected).
    image_id: COCO image id written into every result.
    scores: optional {instance id: score}; ids not in it (or scores=None) get 1.0.
    category_id: category written into every result.
    Returns a list sorted by instance id of dicts with keys image_id, category_id, segmentation (compressed
    RLE, counts as str), bbox [x, y, w, h] in pixels (pixel extent, as pycocotools toBbox: w = x_max - x_min + 1),
    area (pixel count, int) and score (float).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    height, width = labels.shape
    n_pixels = height * width
    column_major = labels.ravel(order="F")
    flat_index = np.flatnonzero(column_major > 0)
    if flat_index.size == 0:
        return []
    pixel_ids = column_major[flat_index]
    # A stable sort by id keeps each instance's pixels in ascending column-major order.
    order = np.argsort(pixel_ids, kind="stable")
    flat_index = flat_index[order]
    pixel_ids = pixel_ids[order]

    first_pixel = np.flatnonzero(np.r_[True, pixel_ids[1:] != pixel_ids[:-1]])
    instance_ids = pixel_ids[first_pixel]
    areas = np.diff(np.r_[first_pixel, pixel_ids.size])

    columns = flat_index // height
    rows = flat_index - columns * height
    # Columns ascend within an instance, so its first/last pixel give the x extent.
    last_pixel = np.r_[first_pixel[1:], pixel_ids.size] - 1
    x_min = columns[first_pixel]
    x_max = columns[last_pixel]
    y_min = np.minimum.reduceat(rows, first_pixel)
    y_max = np.maximum.reduceat(rows, first_pixel)

    # Runs of consecutive flat indices, never crossing from one instance to the next.
    new_instance = np.zeros(flat_index.size, dtype=bool)
    new_instance[first_pixel] = True
    run_start = np.flatnonzero(new_instance | np.r_[True, np.diff(flat_index) != 1])
    run_first = flat_index[run_start]
    run_length = np.diff(np.r_[run_start, flat_index.size])
    runs_per_instance = np.diff(np.r_[np.searchsorted(run_start, first_pixel), run_start.size])

    strings = _pack_counts(*_counts_from_runs(run_first, run_length, runs_per_instance, n_pixels))

    scores = scores or {}
    size = [int(height), int(width)]
    results = []
    for k, instance_id in enumerate(instance_ids.tolist()):
        results.append({
            "image_id": int(image_id),
            "category_id": int(category_id),
            "segmentation": {"size": size, "counts": strings[k]},
            "bbox": [float(x_min[k]), float(y_min[k]),
                     float(x_max[k] - x_min[k] + 1), float(y_max[k] - y_min[k] + 1)],
            "area": int(areas[k]),
            "score": float(scores.get(instance_id, 1.0)),
        })
    return results


def decode_rle_counts(counts: str | bytes) -> np.ndarray:
    """Unpack a compressed RLE counts string into run lengths.

    counts: the "counts" of a compressed COCO RLE (str or ASCII bytes).
    Returns int64 (n,) run lengths alternating 0-run, 1-run, ... in column-major pixel order.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    groups = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    is_last = (groups & 0x20) == 0
    value_end = np.flatnonzero(is_last)
    value_start = np.r_[0, value_end[:-1] + 1]
    value_of_group = np.repeat(np.arange(value_end.size), value_end - value_start + 1)
    shift = 5 * (np.arange(groups.size) - value_start[value_of_group])
    values = np.zeros(value_end.size, dtype=np.int64)
    np.add.at(values, value_of_group, (groups & 0x1F) << shift)
    # The top bit of the last group is the sign bit.
    negative = (groups[value_end] & 0x10) != 0
    values[negative] -= np.int64(1) << (shift[value_end[negative]] + 5)
    # Undo the delta coding: count[i] = value[i] + count[i - 2] for i > 2.
    out = values.copy()
    out[1::2] = np.cumsum(values[1::2])
    out[2::2] = np.cumsum(values[2::2])
    return out


def _runs_of_sorted_indices(flat_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ascending flat indices (n,) -> (first index of each run of consecutive indices, run lengths)."""
    if flat_index.size == 0:
        return flat_index.astype(np.int64), np.zeros(0, dtype=np.int64)
    run_start = np.flatnonzero(np.r_[True, np.diff(flat_index) != 1])
    return flat_index[run_start].astype(np.int64), np.diff(np.r_[run_start, flat_index.size])


def _counts_from_runs(run_first: np.ndarray, run_length: np.ndarray, runs_per_mask: np.ndarray,
                      n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground runs of several masks -> their COCO counts (0-run, 1-run, ...), concatenated.

    run_first, run_length: (n_runs,) start (column-major flat index) and length of each run, grouped by mask
        and ascending within a mask; runs_per_mask: (n_masks,) how many runs each mask has (may be 0).
    Returns (counts int64 (n,), counts_per_mask int64 (n_masks,)). Like pycocotools, a mask's counts end with
    its last run, so a trailing 0-run is written only if nonzero (an all-background mask is [n_pixels]).
    """
    run_first = np.asarray(run_first, dtype=np.int64)
    run_length = np.asarray(run_length, dtype=np.int64)
    runs_per_mask = np.asarray(runs_per_mask, dtype=np.int64)
    run_end = run_first + run_length
    first_run = np.cumsum(runs_per_mask) - runs_per_mask
    has_runs = runs_per_mask > 0
    previous_end = np.r_[0, run_end[:-1]]
    previous_end[first_run[has_runs]] = 0
    last_end = np.zeros(runs_per_mask.size, dtype=np.int64)
    last_end[has_runs] = run_end[first_run[has_runs] + runs_per_mask[has_runs] - 1]
    tail = n_pixels - last_end
    has_tail = tail > 0
    if n_pixels == 0:
        has_tail[:] = True  # pycocotools writes [0] for an empty image

    counts_per_mask = 2 * runs_per_mask + has_tail
    offset = np.cumsum(counts_per_mask) - counts_per_mask
    counts = np.empty(int(counts_per_mask.sum()), dtype=np.int64)
    run_slot = np.repeat(offset, runs_per_mask) + 2 * (np.arange(run_first.size) - np.repeat(first_run, runs_per_mask))
    counts[run_slot] = run_first - previous_end
    counts[run_slot + 1] = run_length
    counts[(offset + 2 * runs_per_mask)[has_tail]] = tail[has_tail]
    return counts, counts_per_mask


def _pack_counts(counts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Pack concatenated count sequences (counts (n,), lengths (n_masks,)) into COCO compressed strings.

    Each count (after subtracting the count two places back, for positions > 2) is written as
    little-endian 5-bit groups + 48; bit 0x20 marks "more groups follow" and the last group's 0x10 bit
    carries the sign.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    position = np.arange(counts.size) - np.repeat(starts, lengths)
    values = counts.copy()
    delta = position > 2
    values[delta] -= counts[np.flatnonzero(delta) - 2]

    groups = np.zeros((values.size, _MAX_GROUPS), dtype=np.uint8)
    n_groups = np.zeros(values.size, dtype=np.int64)
    active = np.ones(values.size, dtype=bool)
    for k in range(_MAX_GROUPS):
        if not active.any():
            break
        low = values & 0x1F
        values = values >> 5  # arithmetic shift: negatives end at -1
        more = np.where((low & 0x10) != 0, values != -1, values != 0)
        groups[:, k] = np.where(active, 48 + (low | np.where(more, 0x20, 0)), 0)
        n_groups += active
        active &= more
    packed = groups[np.arange(_MAX_GROUPS) < n_groups[:, None]].tobytes().decode("ascii")

    char_offset = np.r_[0, np.cumsum(n_groups)]
    bounds = char_offset[np.r_[starts, counts.size]].tolist()
    return [packed[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
