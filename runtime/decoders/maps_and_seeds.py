"""Foreground + centre maps → instances: centre peaks seed a watershed (or graph cut) of the foreground.

The decoder of the objectness-regularisation method (and of any network with a foreground probability map
and a centre heat map). Decodes at the image's scale."""
from __future__ import annotations

from typing import Literal

from cellpoint.runtime.decoding import DecodeContext, Decoder, Instances, Params
from cellpoint.runtime.graphcut import seeded_graphcut
from cellpoint.runtime.labels import relabel_sequential, remove_small_instances
from cellpoint.runtime.peaks import find_peaks
from cellpoint.runtime.watershed import seeded_watershed


SPLITTERS = {"watershed": seeded_watershed, "graphcut": seeded_graphcut}


class MapsAndSeedsParams(Params):
    """foreground_threshold: the foreground is `foreground > this`. center_threshold: a centre peak must
    exceed this. min_distance: network px between centre peaks (the peak window's half size). min_area:
    network px², smaller instances are removed. split: how the foreground is split among the seeds."""
    foreground_threshold: float = 0.5
    center_threshold: float = 0.3
    min_distance: float = 4.0
    min_area: float = 8.0
    split: Literal["watershed", "graphcut"] = "watershed"


def decode_maps_and_seeds(context: DecodeContext, params: MapsAndSeedsParams) -> Instances:
    """maps "foreground" and "centers": float32 (H,W) in [0,1] at the image's size. Distances and areas in
    the params are network px; they are scaled to image px. Returns instances with no extra columns and
    the foreground as the score map."""
    foreground, centers = context.maps["foreground"], context.maps["centers"]
    pixel_scale = context.pixel_scale
    threshold = params.foreground_threshold
    mask = foreground > threshold
    min_distance = max(1, int(round(params.min_distance * pixel_scale)))
    seeds, _ = find_peaks(centers, params.center_threshold, min_distance, mask=mask)
    labels = SPLITTERS[params.split](foreground, seeds, threshold)
    labels = remove_small_instances(labels, int(round(params.min_area * pixel_scale ** 2)))
    return Instances(relabel_sequential(labels), foreground, {})


DECODER = Decoder("maps_and_seeds", MapsAndSeedsParams, decode_maps_and_seeds, scale="image")
