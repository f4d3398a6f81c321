"""Which training example each crop comes from: uniformly over examples, or balanced over groups (data sets
and image kinds) so that a large data set does not drown a small one."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def example_picker(groups: Sequence[str], rng: np.random.Generator, balance: bool) -> Callable[[], int]:
    """A function returning the index of the next example. groups: each example's group name (e.g.
    "dsb2018_bbbc038:color"). balance False: every example equally likely (one random draw per pick, as
    training always did); True: every group equally likely, then every example within it (two draws)."""
    n = len(groups)
    if not balance:
        return lambda: int(rng.integers(n))
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    lists = list(members.values())

    def pick() -> int:
        group = lists[int(rng.integers(len(lists)))]
        return group[int(rng.integers(len(group)))]
    return pick
