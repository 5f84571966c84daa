"""Settings of the synthetic dataset (stdlib only, so config checks stay light)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drs.config.schema import check_keys
from drs.errors import UserError

# 24 hue names, 15 degrees apart; class c is named after the hue of its part.
HUE_NAMES = (
    "red",
    "vermilion",
    "orange",
    "amber",
    "yellow",
    "chartreuse",
    "lime",
    "harlequin",
    "green",
    "emerald",
    "jade",
    "aquamarine",
    "cyan",
    "cerulean",
    "azure",
    "sapphire",
    "blue",
    "indigo",
    "violet",
    "purple",
    "magenta",
    "fuchsia",
    "rose",
    "crimson",
)


@dataclass(frozen=True)
class SaliencySpec:
    blur_sigma: float = 2.0
    miss_rate: float = 0.15
    false_alarm_rate: float = 0.3
    boundary_jitter: int = 2


@dataclass(frozen=True)
class SynthSpec:
    seed: int = 0
    num_train: int = 300
    num_val: int = 60
    image_size: int = 128
    num_classes: int = 4
    objects_per_image: tuple[int, int] = (1, 2)
    object_size: tuple[int, int] = (40, 64)
    part_size: float = 0.3
    body_class_signal: float = 0.5
    clutter: int = 6
    saliency: SaliencySpec = field(default_factory=SaliencySpec)
    # non-square images (e.g. VOC's 500 x 375): each side, when set, replaces image_size for that axis
    width: int | None = None
    height: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the images, in pixels."""
        return (self.height or self.image_size, self.width or self.image_size)

    @classmethod
    def from_dict(cls, values: dict) -> SynthSpec:
        """Build from a config mapping (the `synthetic:` section); unknown keys are errors."""
        check_keys("synthetic", values, cls)
        values = dict(values)
        if "saliency" in values:
            check_keys("synthetic.saliency", values["saliency"], SaliencySpec)
            values["saliency"] = SaliencySpec(**values["saliency"])
        for key in ("objects_per_image", "object_size"):
            if key in values:
                values[key] = tuple(values[key])
        spec = cls(**values)
        spec.validate()
        return spec

    def validate(self) -> None:
        for key in ("num_train", "num_val"):  # every stage reads both splits
            if getattr(self, key) < 1:
                raise UserError(f"config key 'synthetic.{key}': need at least 1 image, got {getattr(self, key)}")
        lo, hi = self.objects_per_image
        if not 1 <= lo <= hi:
            raise UserError(f"config key 'synthetic.objects_per_image': need 1 <= min <= max, got {[lo, hi]}")
        for key in ("width", "height"):
            value = getattr(self, key)
            if value is not None and not 32 <= value <= 1024:
                raise UserError(f"config key 'synthetic.{key}': need 32..1024 pixels, got {value}")
        lo, hi = self.object_size
        side = min(self.shape)
        if not 8 <= lo <= hi <= side:
            what = f"image_size ({self.image_size})" if side == self.image_size else f"the shorter side ({side})"
            raise UserError(f"config key 'synthetic.object_size': need 8 <= min <= max <= {what}, got {[lo, hi]}")
        if not 1 <= self.num_classes <= 20:
            raise UserError(f"config key 'synthetic.num_classes': need 1..20, got {self.num_classes}")
        if self.part_size * self.object_size[0] < 3:
            raise UserError(
                f"config key 'synthetic.part_size': parts of {self.part_size} x {self.object_size[0]} px are under 3 "
                "px; "
                "raise part_size or object_size"
            )

    def class_names(self) -> list[str]:
        return ["background"] + [
            HUE_NAMES[round(class_hue(c, self.num_classes) * 24) % 24] for c in range(1, self.num_classes + 1)
        ]


def class_hue(c: int, num_classes: int) -> float:
    return (c - 1) / num_classes
