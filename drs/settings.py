"""Settings shared by the trainers (stdlib only: the CLI imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from drs.errors import UserError
from drs.fileio import check_keys


# lower bounds of the trainers' settings, by key (a key a trainer lacks is skipped; a list's every item)
AT_LEAST = {
    "epochs": 1,
    "batch_size": 1,
    "crop_size": 1,
    "input_size": 1,
    "stages": 1,
    "log_every": 1,
    "num_workers": 0,
    "lr_decay_epochs": 1,
    "momentum": 0,
    "weight_decay": 0,
    "poly_power": 0,
    "output_stride": 1,
}
ABOVE = {"lr": 0, "width": 0}


@dataclass
class TrainSettings:
    """What every trainer has: a pretrained-weights choice, a schedule, data loading, logging.

    ``section`` names the config section in error messages.
    """

    section: ClassVar[str] = "training"

    pretrained: str = "imagenet"  # "none", "imagenet" (torchvision's cached weights) or a path
    epochs: int = 15
    batch_size: int = 5
    lr: float = 0.001
    crop_size: int = 320
    seed: int = 0
    num_workers: int = 0
    log_every: int = 20

    @classmethod
    def from_dict(cls, values: dict):
        check_keys(cls.section, values, cls)  # known keys, values of the fields' types
        settings = cls(**values)
        settings.check_ranges()
        settings.check()
        return settings

    def check_ranges(self) -> None:
        """Each value within its range (:data:`AT_LEAST`, :data:`ABOVE`; UserError naming the key)."""
        for key, low in AT_LEAST.items():
            value = getattr(self, key, None)
            values = value if isinstance(value, list) else [value]
            if any(v is not None and not v >= low for v in values):
                raise UserError(f"config key '{self.section}.{key}': must be at least {low}, got {value!r}")
        for key, low in ABOVE.items():
            value = getattr(self, key, None)
            if value is not None and not value > low:
                raise UserError(f"config key '{self.section}.{key}': must be above {low}, got {value!r}")

    def check(self) -> None:
        """Rules across keys (UserError naming the key)."""

    @property
    def weights(self) -> str | None:
        """The ``weights`` argument of the model builder."""
        return None if self.pretrained in ("none", "") else self.pretrained

    @property
    def loop(self):
        """The :class:`drs.train.LoopSettings` of these settings (epochs, seed, log interval)."""
        from drs.train import LoopSettings

        return LoopSettings(epochs=self.epochs, seed=self.seed, log_every=self.log_every)

    def loader(self, data):
        """A shuffling DataLoader with its own generator, as :func:`drs.train.fit` needs."""
        import torch
        from torch.utils.data import DataLoader

        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(data) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator(),
        )


@dataclass
class NetworkSettings(TrainSettings):
    """The VGG-16 networks' shape (classifier and refiner): width, batch norm, stages, input size,
    step decay; each trainer sets the paper's defaults."""

    section: ClassVar[str] = "network"

    width: float = 1.0
    batch_norm: bool = False
    extra_batch_norm: bool = False
    stages: int = 5
    lr_decay_epochs: list[int] = field(default_factory=lambda: [5, 10])
    input_size: int = 384

    def check(self) -> None:
        if self.crop_size > self.input_size:
            raise UserError(
                f"config key '{self.section}.crop_size': {self.crop_size} exceeds input_size {self.input_size}"
            )
