"""One dataclass per config section that reaches a stage, its defaults the schema's.

A stage takes its section whole, as one settings object (the command line's ``--settings JSON``;
the rules pass ``config[<section>]``), checked by :meth:`drs.config.schema.Section.from_dict`.
Light imports only (the Snakefile and every stage import it).
"""

from __future__ import annotations

from dataclasses import dataclass

from drs.config.schema import Section, schema_properties, section
from drs.errors import UserError


@dataclass
class LoopSettings:
    """What the training loop (:func:`drs.training.loop.fit`) takes of a trainer's settings."""

    epochs: int
    seed: int = 0
    log_every: int = 20
    amp: bool = True  # only takes effect on CUDA
    max_steps: int | None = None  # stop after this many steps in all (the last epoch cut short)
    accumulation: int = 1  # loader batches per optimizer step (their gradients summed)


@dataclass
class TrainSettings(Section):
    """What every trainer has: a pretrained-weights choice, a schedule, data loading, logging."""

    pretrained: str  # "none", "imagenet" (torchvision's cached weights) or a path
    epochs: int
    batch_size: int
    lr: float
    crop_size: int
    seed: int
    num_workers: int | None  # None: the job's threads on CUDA, none on the CPU (drs.training.scaffold.data_loader)
    log_every: int

    @property
    def weights(self) -> str | None:
        """The ``weights`` argument of the model builder."""
        return None if self.pretrained in ("none", "") else self.pretrained

    @property
    def loop(self) -> LoopSettings:
        """The :class:`LoopSettings` of these settings (epochs, seed, log interval)."""
        return LoopSettings(epochs=self.epochs, seed=self.seed, log_every=self.log_every)


@dataclass
class NetworkSettings(TrainSettings):
    """The VGG-16 networks' shape (classifier and refiner): width, batch norm, stages, input size,
    step decay."""

    width: float
    batch_norm: bool
    extra_batch_norm: bool
    norm: str  # the layer batch_norm / extra_batch_norm insert: batch or group
    stages: int
    lr_decay_epochs: list[int]
    input_size: int

    def check(self) -> None:
        if self.crop_size > self.input_size:
            raise UserError(
                f"config key '{self.section}.crop_size': {self.crop_size} exceeds input_size {self.input_size}"
            )


@section("classifier")
class ClassifierSettings(NetworkSettings):
    """The schema's defaults are the paper's VOC settings; config.yaml scales them down for a CPU."""

    momentum: float
    weight_decay: float
    freeze_batch_norm: bool  # batch norm in eval mode while training (running statistics kept)


@section("refiner")
class RefinerSettings(NetworkSettings):
    """The schema's defaults are the paper's (Adam, lr 1e-4, 30 epochs, ImageNet VGG-16; lr x0.1 at
    epochs 10 and 20 as the reference's run.sh); config.yaml scales them."""

    # True: resize to input_size, random crop_size crop (ours); False: resize to crop_size, no
    # crop, as the reference's utils/LoadData_refine.py (Resize(crop_size) then a no-op RandomCrop)
    random_crop: bool
    # the new layers' (extra convs, classifier) initialisation: "he" as the classifier's, or
    # "normal" N(0, 0.01) weights and zero biases as the reference's models/vgg_refine.py
    new_layer_init: str


@section("segmenter")
class SegmenterSettings(TrainSettings):
    """The schema's defaults are the DRS authors' DeepLabV3+ run (their DeepLabV3Plus-Pytorch
    ``run.sh`` and ``main.py``): ResNet-101, output stride 16, batch 32, 20,000 iterations when
    ``iterations`` is set (config/voc2012.yaml), SGD lr 0.005 for the backbone and 10x (0.05) for
    the head, momentum 0.9, weight decay 1e-4, poly (power 0.9) stepped per iteration, crop 513,
    random scale 0.5-2.0, no colour jitter. config.yaml scales them down for a CPU."""

    backbone: str
    output_stride: int
    iterations: int | None  # the run's length in steps where given (epochs then follow)
    momentum: float
    weight_decay: float
    poly_power: float
    poly_step: str  # "iteration" (the reference) or "epoch"
    scale_range: list[float]
    color_jitter: float  # brightness, contrast and saturation jitter (0: none, as the reference)
    width: float  # channel-count scale (pretrained weights need 1.0)
    # the reference's periodic validation (main.py, every 100 iterations): also keep OUT/best.pt,
    # the model best on val_split (selected on the split it may be reported on: optimistic)
    val_every: int | None
    val_split: str
    val_protocol: str
    val_crop_size: int

    def check(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise UserError(
                f"config key '{self.section}.scale_range': {self.scale_range} must be [min, max] with 0 < min <= max"
            )
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"config key '{self.section}.iterations': {self.iterations} must be at least 1")
        if self.val_every is not None and self.val_every < 1:
            raise UserError(f"config key '{self.section}.val_every': {self.val_every} must be at least 1 (or null)")
        if self.color_jitter < 0:
            raise UserError(f"config key '{self.section}.color_jitter': {self.color_jitter} must be >= 0")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epochs, steps in all): ``iterations`` steps where given (the last epoch cut short),
        else ``epochs`` whole epochs of ``steps_per_epoch``."""
        if self.iterations is None:
            return self.epochs, self.epochs * steps_per_epoch
        return -(-self.iterations // max(1, steps_per_epoch)), self.iterations


@section("deeplabv2")
class DeepLabV2Settings(TrainSettings):
    """The schema's defaults are the DRS authors' DeepLab-V2 run (DeepLab-V2-PyTorch configs/voc12.yaml,
    train.py): ResNet-101 from the COCO DeepLab-V1 weights, batch 5 with 2 accumulation steps,
    20,000 iterations, SGD momentum 0.9, lr 2.5e-4 (ASPP 10x weights, 20x biases), weight decay
    5e-4, poly power 0.9 updated every 10 iterations, crop 321, scales 0.5-1.5, flip."""

    backbone: str
    width: float
    atrous_rates: list[int]
    msc_scales: list[float]
    iterations: int | None
    accumulation: int
    momentum: float
    weight_decay: float
    poly_power: float
    poly_every: int
    scales: list[float]
    flip: bool

    def __post_init__(self) -> None:
        self.scales = [float(s) for s in self.scales]
        self.msc_scales = [float(s) for s in self.msc_scales]

    def check(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"config key '{self.section}.iterations': {self.iterations} must be at least 1 (or null)")
        if self.accumulation < 1 or self.poly_every < 1:
            raise UserError(f"config key '{self.section}.accumulation' and 'poly_every': at least 1")
        if not self.scales or min(self.scales) <= 0:
            raise UserError(f"config key '{self.section}.scales': factors above 0, got {self.scales!r}")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epochs, optimizer steps in all): ``iterations`` where given (the last epoch cut short),
        else ``epochs`` whole epochs of ``steps_per_epoch``."""
        if self.iterations is None:
            return self.epochs, self.epochs * steps_per_epoch
        return -(-self.iterations // max(1, steps_per_epoch)), self.iterations


#: the segmenter architectures (an experiment's segmenter.architecture) and the config section of each
ARCHITECTURES = {"deeplabv3plus": SegmenterSettings, "deeplabv2": DeepLabV2Settings}


@section("maps")
class MapsSettings(Section):
    """Localization-map extraction (``drs extract-maps``): square input sizes, flip, batch size."""

    scales: list[int]
    flip: bool
    batch_size: int

    def check(self) -> None:
        if not self.scales or min(self.scales) < 1:
            raise UserError(f"config key 'maps.scales': square sizes of at least 1 pixel, got {self.scales!r}")


@section("evaluation")
class EvaluationSettings(Section):
    """DeepLabV3+'s predictions and their scores (``drs evaluate``); ``checkpoint`` and
    ``test_split`` choose the workflow's inputs."""

    scales: list[float]
    flip: bool
    protocol: str
    crop_size: int
    checkpoint: str
    crf: bool
    test_split: str

    def __post_init__(self) -> None:
        self.scales = [float(s) if isinstance(s, int) and not isinstance(s, bool) else s for s in self.scales]

    def check(self) -> None:
        if not self.scales or not all(s > 0 for s in self.scales):
            raise UserError(f"config key 'evaluation.scales': factors above 0, got {self.scales!r}")


@section("pseudo_labels")
class PseudoLabelSettings(Section):
    """The pseudo-label rule and its scoring (``drs pseudo-labels``, ``eval-maps``, ``score-labels``,
    ``check-dataset``); see :mod:`drs.labels.rule` and :mod:`drs.labels.scoring`."""

    alpha: float
    saliency: str
    bg_threshold: float
    conflict_score: float
    # grey level (0-255) above which saliency is salient; None: grey / 255 as continuous saliency
    saliency_threshold: float | None
    reference_split: str | None
    headline_protocol: str
    missing_saliency: str

    def __post_init__(self) -> None:
        # numbers as a number flag gives them (50 -> 50.0): the metrics JSON shows them alike either way
        for key in ("alpha", "bg_threshold", "conflict_score", "saliency_threshold"):
            value = getattr(self, key)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, key, float(value))

    def check(self) -> None:
        for key in ("alpha", "bg_threshold", "conflict_score"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"config key '{self.section}.{key}': must be in [0, 1], got {value!r}")
        t = self.saliency_threshold
        if t is not None and not 0.0 <= t <= 255.0:
            raise UserError(f"config key '{self.section}.saliency_threshold': must be in [0, 255] or null, got {t!r}")


#: the schema's choices of the pseudo labels' background cue, and of an image without a saliency map
SALIENCY_MODES = tuple(schema_properties("pseudo_labels")["saliency"]["enum"])
MISSING_SALIENCY_MODES = tuple(schema_properties("pseudo_labels")["missing_saliency"]["enum"])
HEADLINE_PROTOCOLS = tuple(schema_properties("pseudo_labels")["headline_protocol"]["enum"])
EVALUATION_PROTOCOLS = tuple(schema_properties("evaluation")["protocol"]["enum"])
