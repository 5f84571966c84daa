"""The device a stage runs on (CUDA when present, else the CPU), its mixed-precision dtype, and the seeds of a run."""

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


AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def amp_dtype(device: torch.device, choice: str = "auto") -> torch.dtype | None:
    """The autocast dtype of mixed precision on ``device``, None for none: on CUDA, ``auto`` is
    bfloat16 where the GPU supports it (no loss scaling, so no GradScaler and none of its per-step
    inf check), else float16 (which needs a GradScaler); on the CPU always None (fp32)."""
    if choice not in AMP_CHOICES:
        raise ValueError(f"amp {choice!r}: expected one of {AMP_CHOICES}")
    if device.type != "cuda" or choice == "off":
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if choice == "bf16" else torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
