"""Decoders: network output maps → label image. The card names one and gives its parameters, so the
runtime needs no method-specific code beyond these.

Every decoder returns (labels uint32 (H,W), score map float32 (H,W), extra instance-table columns
{name: array in label-id order}). Most are called as decoder(maps, params, pixel_scale, image_shape);
`detection_response` (card "decode_at": "network") as decoder(maps, params, contributions_fn, image) at
the network's scale, with a callable that runs the package's guided-backpropagation graph, and
`location_masks` (LACSS, also "decode_at": "network") as decoder(maps, params, run_instances) with a
callable that runs the package's per-location instance graph, and `box_masks` (Point2Mask, "decode_at":
"network") as decoder(maps, params, run_masks, shape) with a callable that runs the package's mask graph."""
from __future__ import annotations

import numpy as np

from cellpoint.runtime.box_masks import decode_box_masks
from cellpoint.runtime.canonical_shape import decode_canonical_shape
from cellpoint.runtime.detection_response import decode_detection_response
from cellpoint.runtime.location_masks import decode_location_masks
from cellpoint.runtime.postprocess import (find_peaks, relabel_sequential, remove_small_instances,
                                           seeded_graphcut, seeded_watershed)


def decode_maps_and_seeds(maps: dict[str, np.ndarray], params: dict, pixel_scale: float = 1.0,
                          image_shape: tuple[int, int] | None = None):
    """Foreground + centre maps → instances: centre peaks seed a watershed (or graph-cut) of the foreground.

    maps: "foreground" and "centers", float32 (H,W) in [0,1]. params: the card's decoder entry, with
    distances and areas in the network's pixels; pixel_scale: image px per network px (they are scaled).
    Returns (labels uint32 (H,W), score map float32 (H,W) for the instance table, no extra columns)."""
    foreground, centers = maps["foreground"], maps["centers"]
    threshold = params["foreground_threshold"]
    mask = foreground > threshold
    min_distance = max(1, int(round(params["min_distance"] * pixel_scale)))
    seeds, _ = find_peaks(centers, params["center_threshold"], min_distance, mask=mask)
    split = seeded_graphcut if params.get("split") == "graphcut" else seeded_watershed
    labels = split(foreground, seeds, threshold)
    labels = remove_small_instances(labels, int(round(params.get("min_area", 0) * pixel_scale ** 2)))
    return relabel_sequential(labels), foreground, {}


DECODERS = {"maps_and_seeds": decode_maps_and_seeds, "canonical_shape": decode_canonical_shape,
            "detection_response": decode_detection_response, "location_masks": decode_location_masks,
            "box_masks": decode_box_masks}
