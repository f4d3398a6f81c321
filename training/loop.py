"""The optimisation loop every method trains with: loss, backward, optional gradient clipping, optimiser
and schedule step, and a log line of the mean loss terms every `log_every` steps."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch

StepLoss = Callable[[int], tuple[torch.Tensor, dict[str, float]]]


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int, lr: float):
    """Cosine decay from `lr` to lr/100 over `steps`."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * 0.01)


def optimise(parameters: Iterable[torch.nn.Parameter], step_loss: StepLoss, steps: int,
             optimizer: torch.optim.Optimizer, schedule, log: Callable[[str], None] = print,
             log_every: int = 100, clip_norm: float | None = None, budget_seconds: float | None = None) -> float:
    """Run `steps` optimisation steps; returns the seconds taken.

    step_loss(step) → (loss tensor, {term: float}) draws the step's batch and computes its loss.
    clip_norm: clip the gradients' total norm to this (None: no clipping). Every `log_every` steps and at
    the last, logs the means of the loss and its terms since the previous line.
    budget_seconds: stop when this much time has passed; the learning rate then follows the cosine decay
    by whichever is further along, steps or time (`schedule` is not used)."""
    parameters = list(parameters)
    start = time.perf_counter()
    base_lrs = [group.get("max_lr", group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
    sums: dict[str, float] = {}
    n = 0
    for step in range(steps):
        if budget_seconds:
            progress = max(step / steps, (time.perf_counter() - start) / budget_seconds)
            if progress >= 1.0:
                log(f"stopped at step {step}: the time budget of {budget_seconds:.0f} s is spent")
                break
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))
        loss, parts = step_loss(step)
        optimizer.zero_grad()
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        optimizer.step()
        if not budget_seconds:
            schedule.step()
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
        n += 1
        if step % log_every == 0 or step == steps - 1:
            log(f"step {step:5d}/{steps}  " + "  ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
                + f"  ({time.perf_counter() - start:.0f} s)")
            sums, n = {}, 0
    return time.perf_counter() - start
