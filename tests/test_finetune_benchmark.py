"""benchmarks/finetune.py's simulated annotator: what it clicks, deletes and draws for a prediction, and what
that costs (pure functions on small label images)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO

pytest.importorskip("torch")
sys.path.insert(0, str(REPO / "benchmarks"))
import finetune  # noqa: E402


def _truth_and_prediction():
    """Three true cells; the prediction finds cell 1, splits cell 2 in two, misses cell 3 and adds a false one."""
    truth = np.zeros((40, 60), np.int32)
    truth[2:12, 2:12], truth[2:12, 20:40], truth[25:35, 5:15] = 1, 2, 3
    predicted = np.zeros_like(truth)
    predicted[3:11, 3:11] = 1
    predicted[2:12, 20:30], predicted[2:12, 30:40] = 2, 3
    predicted[25:35, 40:50] = 4                       # on background
    return truth, predicted


def test_point_corrections_accept_matches_delete_the_rest_and_click_the_missed():
    truth, predicted = _truth_and_prediction()
    xy, added, deleted = finetune.simulate_corrections(predicted, truth)
    assert (added, deleted) == (1, 2)                 # cell 3 clicked; the split's second half and the false one deleted
    cells = {int(truth[int(round(y)), int(round(x))]) for x, y in xy}
    assert cells == {1, 2, 3} and len(xy) == 3


def test_box_corrections_keep_predicted_outlines_and_draw_missed_boxes():
    truth, predicted = _truth_and_prediction()
    cells, drawn, deleted = finetune.simulate_box_corrections(predicted, truth, np.random.default_rng(0))
    assert (drawn, deleted) == (1, 2) and len(cells) == 3
    boxes = [c["box"] for c in cells]
    assert [4.5, 24.5, 14.5, 34.5] in boxes                              # the drawn box of cell 3 (truth)
    assert [2.5, 2.5, 10.5, 10.5] in boxes                               # cell 1 as predicted
    assert all(len(c["points"]) == finetune.BOX_CLICKS for c in cells)
