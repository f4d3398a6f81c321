"""Balanced sampling over data sets and image kinds."""
import numpy as np
import pytest

from cellpoint.training.sampling import example_picker, group_weights


def test_group_weights_follow_the_balance():
    sizes = [400, 100, 4]
    assert np.allclose(group_weights(sizes, "none"), np.array(sizes) / 504)
    assert np.allclose(group_weights(sizes, "equal"), 1 / 3)
    assert np.allclose(group_weights(sizes, "sqrt"), np.array([20, 10, 2]) / 32)
    with pytest.raises(ValueError, match="balance"):
        group_weights(sizes, "even")


@pytest.mark.parametrize("balance, expected", [("none", [0.8, 0.2]), ("equal", [0.5, 0.5]), (True, [0.5, 0.5]),
                                               ("sqrt", [2 / 3, 1 / 3])])
def test_picker_draws_groups_as_weighted(balance, expected):
    groups = ["a"] * 16 + ["b"] * 4
    pick = example_picker(groups, np.random.default_rng(0), balance)
    drawn = np.array([groups[pick()] == "a" for _ in range(6000)])
    assert abs(drawn.mean() - expected[0]) < 0.03
