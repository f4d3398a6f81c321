"""Point2Mask decoding in the runtime (cellpoint.runtime.decoders.box_masks, candidates.box_nms) on hand-made
arrays."""
from __future__ import annotations

import numpy as np
import pytest

from cellpoint.runtime.decoders.box_masks import (BoxMasksParams, decode_box_masks, detect_boxes, level_proposals,
                                                  paste_patch, pixel_extent)
from cellpoint.runtime.candidates import box_nms


def test_nms_keeps_the_best_of_overlapping_boxes_and_respects_the_limit():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0.5, 0.5, 10.5, 10.5], [40, 0, 44, 4]],
                     np.float64)
    scores = np.array([0.8, 0.9, 0.7, 0.6, 0.5])
    assert box_nms(boxes, scores, 0.5).tolist() == [1, 2, 4]          # 0 and 3 overlap 1 (IoU 0.82, 0.75)
    assert box_nms(boxes, scores, 0.9).tolist() == [1, 0, 2, 3, 4]    # nothing overlaps that much
    assert box_nms(boxes, scores, 0.5, limit=2).tolist() == [1, 2]
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_proposals_are_local_maxima_above_the_threshold_with_their_boxes():
    score = np.zeros((4, 5), np.float32)
    score[1, 2], score[1, 3], score[3, 0] = 0.9, 0.8, 0.6               # (1, 3) is no local maximum
    dist = np.zeros((4, 4, 5), np.float32)
    dist[:, 1, 2] = (3, 4, 5, 6)
    boxes, values = level_proposals(score, dist, 8, 0.5, peak_radius=1)
    assert values.tolist() == pytest.approx([0.9, 0.6])
    # grid cell (1, 2) at stride 8 is centred on pixel (x, y) = (8·2 + 3.5, 8·1 + 3.5) = (19.5, 11.5)
    assert boxes[0].tolist() == [16.5, 7.5, 24.5, 17.5]
    assert len(level_proposals(score, dist, 8, 0.5, peak_radius=0)[0]) == 3


def test_detections_over_levels_suppress_a_duplicate_on_another_level():
    maps = {}
    for s in (4, 8, 16):
        maps[f"score_s{s}"] = np.zeros((1, 64 // s, 64 // s), np.float32)
        maps[f"boxes_s{s}"] = np.full((4, 64 // s, 64 // s), 6.0, np.float32)
    maps["score_s4"][0, 3, 3] = 0.9          # centre (13.5, 13.5) ± 6
    maps["score_s8"][0, 1, 1] = 0.7          # centre (11.5, 11.5) ± 6: IoU 0.53 with the first → dropped
    maps["score_s16"][0, 3, 3] = 0.6         # centre (55.5, 55.5), elsewhere
    boxes, scores = detect_boxes(maps, BoxMasksParams(strides=(4, 8, 16), score_threshold=0.5, nms_iou=0.5))
    assert scores.tolist() == pytest.approx([0.9, 0.6])
    assert boxes.tolist() == [[7.5, 7.5, 19.5, 19.5], [49.5, 49.5, 61.5, 61.5]]
    one, _ = detect_boxes(maps, BoxMasksParams(score_threshold=0.5, max_proposals=1))
    assert len(one) == 1


def test_a_pasted_patch_covers_the_pixels_of_its_box_and_interpolates_between_bins():
    assert pixel_extent(np.array([2.5, 3.5, 6.5, 9.5])) == (4, 3, 10, 7)   # pixel centres 3..6, 4..9
    assert pixel_extent(np.array([2.2, 3.1, 2.4, 3.3])) == (3, 2, 4, 3)    # thinner than a pixel: nearest
    patch = np.array([[0.0, 1.0], [2.0, 3.0]])                               # bins centred 1 px in from the edge
    extent, out = paste_patch(patch, np.array([0.0, 0.0, 4.0, 4.0]))
    assert extent == (0, 0, 5, 5) and out.shape == (5, 5)
    # bin (i, j) sits at (1 + 2j, 1 + 2i): there the patch value itself, between bins the mean, outside clamped
    assert out[1, 1] == 0 and out[1, 3] == 1 and out[3, 1] == 2 and out[3, 3] == 3
    assert out[2, 2] == pytest.approx(1.5) and out[0, 0] == 0 and out[4, 4] == 3


def test_decoded_masks_land_at_their_boxes_and_overlaps_go_to_the_more_probable_cell():
    shape = (64, 80)
    maps = {f"score_s{s}": np.zeros((1, 64 // s, 80 // s), np.float32) for s in (4, 8, 16)}
    maps.update({f"boxes_s{s}": np.ones((4, 64 // s, 80 // s), np.float32) for s in (4, 8, 16)})
    maps["features"] = np.zeros((3, 16, 20), np.float32)
    # two boxes at stride 4: around (21.5, 25.5) and (37.5, 25.5), each 20 px wide, overlapping by 4 px
    for j, p in ((5, 0.9), (9, 0.8)):
        maps["score_s4"][0, 6, j] = p
        maps["boxes_s4"][:, 6, j] = 10.0
    calls = []

    def run_masks(features, boxes):
        """Stand-in mask graph: a full box, more probable for the first box of each call."""
        calls.append((features.shape, boxes.dtype, len(boxes)))
        out = np.full((len(boxes), 1, 6, 6), 0.7, np.float32)
        out[0] = 0.95
        return out

    labels, score, columns = decode_box_masks(maps, BoxMasksParams(score_threshold=0.5, batch=1), run_masks, shape)
    assert calls == [((1, 3, 16, 20), np.float32, 1)] * 2
    assert labels.dtype == np.uint32 and labels.max() == 2
    yy, xx = np.nonzero(labels == 1)
    assert (xx.min(), xx.max(), yy.min(), yy.max()) == (12, 31, 16, 35)      # box 11.5–31.5 × 15.5–35.5
    yy, xx = np.nonzero(labels == 2)
    assert (xx.min(), xx.max(), yy.min(), yy.max()) == (32, 47, 16, 35)      # the shared columns went to 1
    assert columns["detection_score"].tolist() == pytest.approx([0.9, 0.8])
    assert score[20, 30] == pytest.approx(0.95) and score[0, 0] == 0
    # a mask below the threshold disappears, and with it its detection score
    labels, _, columns = decode_box_masks(maps, BoxMasksParams(score_threshold=0.5, mask_threshold=0.9), run_masks, shape)
    assert labels.max() == 1 and columns["detection_score"].tolist() == pytest.approx([0.9])
    empty = decode_box_masks({**maps, "score_s4": np.zeros_like(maps["score_s4"])}, BoxMasksParams(), run_masks,
                             shape)
    assert empty[0].max() == 0 and len(empty[2]["detection_score"]) == 0
