"""`drs train-segmenter`: DeepLabV3+ trained on pseudo labels (or, for the reference, ground truth).

Stage 6. The labels are palette PNGs (``<labels>/<id>.png``, 255 = ignore): the pseudo labels of
stage 5, or the dataset's own masks for the fully-supervised reference run. Cross-entropy ignoring
255; SGD (momentum 0.9) with the backbone at ``lr`` and the head (ASPP, projection, classifier) at 10
``lr``, poly decay (power 0.9) per iteration (or per epoch); augmentation as the reference's:
random rescale, flip, random crop padded with 255 (the reference pads labels with 0), optional
colour jitter. The shared loop (drs.train.fit) brings the device choice, AMP on
CUDA, checkpoints every epoch and resumption. The result is ``OUT/model.pt``: state dict plus the
network and training settings.
"""

from __future__ import annotations

import logging
from pathlib import Path

from drs.errors import UserError
from drs.settings import TrainSettings, add_trainer_arguments, section, settings_from_args

log = logging.getLogger("drs.segmenter")

GROUND_TRUTH = "ground-truth"


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


def train_segmenter(
    dataset: str | Path,
    split: str,
    labels: str | Path | None,
    out_dir: str | Path,
    settings: SegmenterSettings,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    """Train on ``labels`` (a folder of label PNGs; None: the dataset's ground-truth masks)."""
    import torch
    import torch.nn.functional as F

    from drs.data.datasets import SegmentationSet
    from drs.data.fingerprint import split_fingerprint
    from drs.data.voc import IGNORE, VOCDataset
    from drs.models.deeplab import build_segmenter
    from drs.train import train

    voc = VOCDataset(dataset, split)
    data = SegmentationSet(voc, labels, settings)

    def optimizer(model):
        groups = model.parameter_groups(settings.lr)
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)

    def step_loss(model, batch, device):
        images, targets = (t.to(device, non_blocking=True) for t in batch)
        # a sum and a pixel count: under torchrun the loop divides by the count over all processes,
        # so each labelled pixel weighs the same as in one process
        loss = F.cross_entropy(model(images), targets, ignore_index=IGNORE, reduction="sum")
        return loss, (targets != IGNORE).sum()

    supervision = "full" if labels is None else "image"
    record = {
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": split,
        "labels": GROUND_TRUTH if labels is None else str(labels),
        "supervision": supervision,
        # the images and labels trained on: a rerun on changed data starts afresh (drs.data.fingerprint)
        "data_fingerprint": (
            split_fingerprint(voc, ("images", "masks"))
            if labels is None
            else split_fingerprint(voc, ("images", "labels"), label_dir=labels)
        ).as_dict(),
    }
    best = None
    if settings.val_every:
        val = VOCDataset(dataset, settings.val_split)
        best = lambda model, record: _BestOnVal(model, record, out_dir, settings, val)  # noqa: E731
    return train(
        "segmenter",
        f"segmenter[{supervision}]",
        settings,
        out_dir,
        data,
        lambda: build_segmenter(len(voc.class_names), settings),
        optimizer,
        step_loss,
        record,
        schedule=poly_schedule,
        after_step=best,
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )


def poly_schedule(settings: SegmenterSettings, steps_per_epoch: int):
    """DeepLabV3+'s schedule: :meth:`SegmenterSettings.schedule`'s length, lr x (1 - t/T)^poly_power
    with t counting steps (poly_step: iteration) or epochs."""
    from dataclasses import replace

    from drs.train import poly_decay

    epochs, total_steps = settings.schedule(steps_per_epoch)
    loop = replace(settings.loop, epochs=epochs, max_steps=settings.iterations)
    log.info("segmenter: %d steps, poly per %s", total_steps, settings.poly_step)
    if settings.poly_step == "iteration":
        return loop, {"lr_at_step": poly_decay(total_steps, settings.poly_power)}
    return loop, {"lr_at_epoch": poly_decay(epochs, settings.poly_power)}


BEST_FILE = "best.pt"


class _BestOnVal:
    """After every ``val_every`` steps: the model's mIoU on ``val_split``; the best so far is kept
    as ``OUT/best.pt`` (a model.pt whose record says ``selected_on_val``). A resumed run starts
    from the best.pt it left."""

    def __init__(self, model, record: dict, out_dir: Path, settings: SegmenterSettings, voc):
        from drs.train import read_model_file

        self.model, self.record, self.settings, self.voc = model, record, settings, voc
        self.path = Path(out_dir) / BEST_FILE
        self.best = -1.0
        if self.path.exists():
            kept = read_model_file(self.path, ("segmenter",))
            if kept.get("settings") == record["settings"]:
                self.best = kept["selected_on_val"]["miou"]

    def __call__(self, step: int) -> None:
        from drs.evaluate import validation_miou
        from drs.train import atomic_save

        s = self.settings
        if step % s.val_every:
            return
        miou = validation_miou(self.model, self.voc, s.val_protocol, s.val_crop_size)
        log.info("step %d: mIoU %.4f on %s (best so far %.4f)", step, miou, s.val_split, max(self.best, miou))
        if miou > self.best:
            self.best = miou
            chosen = {
                "split": s.val_split,
                "step": step,
                "every": s.val_every,
                "miou": miou,
                "protocol": s.val_protocol,
            }
            atomic_save({"state_dict": self.model.state_dict(), **self.record, "selected_on_val": chosen}, self.path)


def load_segmenter(path: str | Path):
    """(DeepLabV3+ in eval mode on the CPU, the checkpoint's record without its state dict)."""
    from drs.models.deeplab import DeepLabV3Plus
    from drs.train import StateDictMismatch, load_model

    try:
        return load_model(path, ("segmenter",), DeepLabV3Plus)
    except StateDictMismatch as err:  # keys or shapes of another network
        raise UserError(
            f"{err}; its weights do not fit this DeepLabV3+: a model.pt from before the reference's layout "
            "(aspp.*, decoder.*) must be retrained"
        ) from None


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-segmenter",
        help="train DeepLabV3+ on pseudo labels (or ground-truth masks)",
        description="Stage 6: DeepLabV3+ (torchvision ResNet, ASPP, V3+ decoder) trained with cross-entropy "
        "(255 ignored) on a folder of label PNGs, or on the dataset's masks with --labels ground-truth "
        "(the fully-supervised reference). Resumes from OUT/last.pt.",
    )
    add_trainer_arguments(p, SegmenterSettings)
    p.add_argument("--labels", required=True, help=f"folder of <id>.png labels, or '{GROUND_TRUTH}'")
    p.set_defaults(func=_run)


def _run(args) -> int:
    labels = None if args.labels == GROUND_TRUTH else args.labels
    train_segmenter(args.dataset, args.split, labels, args.out, settings_from_args(SegmenterSettings, args))
    return 0
