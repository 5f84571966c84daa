"""The Discriminative Region Suppression (DRS) module.

Applied to a post-ReLU activation ``x`` of shape (B, C, H, W), per channel::

    x_max = global_max_pool(x)                      # (B, C, 1, 1)
    c     = sigmoid(fc(global_avg_pool(x)))         # learnable controller in (0, 1)
          | delta                                   # or a fixed constant in (0, 1]
    out   = min(x, c * x_max)

so no activation can exceed a fraction ``c`` of its channel's maximum: the most discriminative
responses are clipped and the classifier has to spread its evidence to the rest of the object.
``delta = 1`` leaves non-negative inputs untouched (the plain CAM baseline).
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

KINDS = ("learnable", "fixed", "none")


def _check(kind: str, delta: float | None) -> None:
    """ValueError unless (kind, delta) is a valid choice (kind 'none' included)."""
    if kind not in KINDS:
        raise ValueError(f"DRS kind {kind!r}: unknown; expected one of {list(KINDS)}")
    if kind == "fixed":
        if delta is None:
            raise ValueError("DRS kind 'fixed' needs delta, a number in (0, 1]")
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
            raise ValueError(f"DRS delta {delta!r}: expected a number in (0, 1]")
        if not 0.0 < float(delta) <= 1.0:
            raise ValueError(f"DRS delta {delta!r}: out of range; expected a number in (0, 1]")
    elif delta is not None:
        raise ValueError(f"DRS delta {delta!r} given for kind {kind!r}: delta is only used by kind 'fixed'")


class DRS(nn.Module):
    """Suppress each channel of ``x`` to at most ``controller * channel max``.

    Args:
        channels: number of channels C of the input.
        kind: ``"learnable"`` (controller ``sigmoid(fc(avg_pool(x)))`` with ``fc`` a bias-free
            C x C linear layer initialised N(0, 0.01), so the controller starts near 0.5) or
            ``"fixed"`` (controller = ``delta``).
        delta: the fixed controller, in (0, 1]; only for ``kind="fixed"``.
    """

    def __init__(self, channels: int, kind: str = "learnable", delta: float | None = None):
        super().__init__()
        if kind == "none":
            raise ValueError("DRS kind 'none' is not a DRS module; use activation(channels, 'none') for a plain ReLU")
        _check(kind, delta)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"DRS channels {channels!r}: expected a positive integer")
        self.channels = channels
        self.kind = kind
        self.delta = float(delta) if delta is not None else None
        if kind == "learnable":
            self.fc = nn.Linear(channels, channels, bias=False)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.kind == "learnable":
            nn.init.normal_(self.fc.weight, mean=0.0, std=0.01)

    def controller(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel suppression controller, shape (B, C)."""
        if self.kind == "learnable":
            return torch.sigmoid(self.fc(x.mean(dim=(2, 3))))
        return x.new_full(x.shape[:2], self.delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"DRS expects input (B, {self.channels}, H, W); got {tuple(x.shape)}")
        x_max = x.amax(dim=(2, 3), keepdim=True)
        if self.kind == "learnable":
            bound = self.controller(x)[:, :, None, None] * x_max
        else:
            bound = self.delta * x_max
        return torch.minimum(x, bound)

    def extra_repr(self) -> str:
        if self.kind == "fixed":
            return f"{self.channels}, kind='fixed', delta={self.delta}"
        return f"{self.channels}, kind='learnable'"


def activation(channels: int, kind: str = "learnable", delta: float | None = None) -> nn.Module:
    """The activation used throughout the classifier: ReLU followed by DRS, or a plain ReLU for 'none'.

    The ReLU is not in-place: DRS reads its input twice (the value and the channel statistics).
    """
    _check(kind, delta)
    if kind == "none":
        return nn.ReLU()
    return nn.Sequential(nn.ReLU(), DRS(channels, kind, delta))
