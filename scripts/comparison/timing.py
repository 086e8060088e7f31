"""CPU seconds of a training step, as the studies time their variants."""

from __future__ import annotations

import time
from typing import Callable

import torch


def cpu_seconds_per_step(loss: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, warmup: int = 2,
                         repeats: int = 3) -> float:
    """Mean CPU seconds (this process, all threads) of `repeats` optimizer steps on `loss()`, after `warmup`
    untimed ones (allocator and kernel selection)."""

    def step() -> None:
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - start) / repeats
