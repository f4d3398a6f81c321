"""Which training example each crop comes from: uniformly over examples, or balanced over groups (data sets
and image kinds) so that a large data set does not drown a small one."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

BALANCES = ("none", "equal", "sqrt")


def group_weights(sizes: Sequence[int], balance: str) -> np.ndarray:
    """Probability of drawing each group, from the groups' example counts (n,): "none" ∝ size (every example
    equally likely), "equal" uniform, "sqrt" ∝ sqrt(size) (a small group is seen more often than its share,
    a large one still more than a small one). float64 (n,), summing to 1."""
    sizes = np.asarray(sizes, np.float64)
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, not {balance!r}")
    weights = {"none": sizes, "equal": np.ones_like(sizes), "sqrt": np.sqrt(sizes)}[balance]
    return weights / weights.sum()


def example_picker(groups: Sequence[str], rng: np.random.Generator, balance: str | bool) -> Callable[[], int]:
    """A function returning the index of the next example. groups: each example's group name (e.g.
    "dsb2018_bbbc038:color"). balance "none" (or False): every example equally likely (one random draw per
    pick, as training always did); "equal" (or True) / "sqrt": a group drawn with `group_weights`, then an
    example within it (two draws)."""
    balance = {False: "none", True: "equal"}.get(balance, balance)
    n = len(groups)
    if balance == "none":
        return lambda: int(rng.integers(n))
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    lists = list(members.values())
    weights = group_weights([len(m) for m in lists], balance)

    def pick() -> int:
        group = lists[int(rng.choice(len(lists), p=weights))]
        return group[int(rng.integers(len(group)))]
    return pick
