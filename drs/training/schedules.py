"""Learning-rate schedules: the VGG trainers' step decay, DeepLab's poly."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

from drs.config.settings import LoopSettings, SegmenterSettings

log = logging.getLogger("drs.train")


def step_decay(milestones: list[int], gamma: float = 0.1) -> Callable[[int], float]:
    """Learning-rate multiplier: times gamma from each milestone epoch on (1-based: milestones
    [5, 10] train epochs 1-4 at the base rate, 5-9 at 0.1x, 10- at 0.01x, as the reference code)."""

    def factor(epoch: int) -> float:
        return gamma ** sum(epoch + 1 >= m for m in milestones)

    return factor


def poly_decay(total_epochs: int, power: float = 0.9) -> Callable[[int], float]:
    def factor(epoch: int) -> float:
        return math.pow(1 - epoch / max(1, total_epochs), power)

    return factor


def step_schedule(settings, steps_per_epoch: int) -> tuple[LoopSettings, dict]:
    """The VGG trainers' schedule: ``settings.epochs`` epochs, lr x0.1 from each of
    ``settings.lr_decay_epochs`` on."""
    return settings.loop, {"lr_at_epoch": step_decay(settings.lr_decay_epochs)}


def poly_schedule(settings: SegmenterSettings, steps_per_epoch: int):
    """DeepLabV3+'s schedule: :meth:`SegmenterSettings.schedule`'s length, lr x (1 - t/T)^poly_power
    with t counting steps (poly_step: iteration) or epochs."""
    epochs, total_steps = settings.schedule(steps_per_epoch)
    loop = replace(settings.loop, epochs=epochs, max_steps=settings.iterations)
    log.info("segmenter: %d steps, poly per %s", total_steps, settings.poly_step)
    if settings.poly_step == "iteration":
        return loop, {"lr_at_step": poly_decay(total_steps, settings.poly_power)}
    return loop, {"lr_at_epoch": poly_decay(epochs, settings.poly_power)}
