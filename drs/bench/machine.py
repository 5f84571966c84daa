"""The machine a benchmark ran on, and its load, recorded with every figure."""

from __future__ import annotations

import os
import platform
import resource

import torch

from drs.util.files import usable_cores


def _machine(device=None) -> dict:
    """The machine a benchmark ran on; ``device=None``: a CPU-only benchmark (torch not imported)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
    }
    if device is None:
        info["device"] = "cpu"
        return info

    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), device=str(device))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu_model": model or platform.processor(),
        "nproc": os.cpu_count(),
        "usable_cores": usable_cores(),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _rss_peaks_mb() -> dict:
    """This process's peak resident memory (``VmHWM``: since its ``exec``; ``ru_maxrss`` would
    carry the forking parent's peak over), and its children's largest ``ru_maxrss`` (forked
    workers: includes what they shared with this process at the fork)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as f:
            own = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        pass
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": own, "peak_rss_children_mb": children}
