"""The device a stage runs on (CUDA when present, else the CPU), and the seeds of a run."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger("drs.device")


def pick_device(prefer: str = "auto") -> torch.device:
    """CUDA when present (the device SLURM or CUDA_VISIBLE_DEVICES exposes), else the CPU."""
    if prefer == "cpu" or not torch.cuda.is_available():
        if prefer not in ("auto", "cpu"):
            log.warning("device %r requested but CUDA is not available: running on the CPU", prefer)
        return torch.device("cpu")
    return torch.device("cuda" if prefer == "auto" else prefer)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}; CUDA_VISIBLE_DEVICES={visible})"
    return f"cpu ({torch.get_num_threads()} threads; no CUDA device found)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
