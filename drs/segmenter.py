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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from drs.errors import UserError
from drs.fileio import json_object
from drs.settings import TrainSettings

log = logging.getLogger("drs.segmenter")

GROUND_TRUTH = "ground-truth"


@dataclass
class SegmenterSettings(TrainSettings):
    """Defaults are the DRS authors' DeepLabV3+ run (their DeepLabV3Plus-Pytorch ``run.sh`` and
    ``main.py``): ResNet-101, output stride 16, batch 32, 20,000 iterations when ``iterations`` is
    set (config/voc2012.yaml), SGD lr 0.005 for the backbone and 10x (0.05) for the head, momentum
    0.9, weight decay 1e-4, poly (power 0.9) stepped per iteration, crop 513, random scale 0.5-2.0,
    no colour jitter. config.yaml scales them down for a CPU."""

    section: ClassVar[str] = "segmenter"

    backbone: str = "resnet101"
    output_stride: int = 16
    epochs: int = 46
    iterations: int | None = None  # the run's length in steps where given (epochs then follow)
    batch_size: int = 32
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 0.0001
    poly_power: float = 0.9
    poly_step: str = "iteration"  # "iteration" (the reference) or "epoch"
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    crop_size: int = 513
    color_jitter: float = 0.0  # brightness, contrast and saturation jitter (0: none, as the reference)
    width: float = 1.0  # channel-count scale (pretrained weights need 1.0)
    # the reference's periodic validation (main.py, every 100 iterations): also keep OUT/best.pt,
    # the model best on val_split (selected on the split it may be reported on: optimistic)
    val_every: int | None = None
    val_split: str = "val"
    val_protocol: str = "reference"
    val_crop_size: int = 513

    def check(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise UserError(f"config key '{self.section}.scale_range': {self.scale_range} must be [min, max] with 0 < min <= max")
        if self.poly_step not in ("iteration", "epoch"):
            raise UserError(f"config key '{self.section}.poly_step': {self.poly_step!r} must be iteration or epoch")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"config key '{self.section}.iterations': {self.iterations} must be at least 1")
        if self.val_every is not None and self.val_every < 1:
            raise UserError(f"config key '{self.section}.val_every': {self.val_every} must be at least 1 (or null)")
        if self.val_protocol not in ("reference", "full"):
            raise UserError(f"config key '{self.section}.val_protocol': {self.val_protocol!r} must be reference or full")
        if self.color_jitter < 0:
            raise UserError(f"config key '{self.section}.color_jitter': {self.color_jitter} must be >= 0")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epochs, steps in all): ``iterations`` steps where given (the last epoch cut short),
        else ``epochs`` whole epochs of ``steps_per_epoch``."""
        if self.iterations is None:
            return self.epochs, self.epochs * steps_per_epoch
        return -(-self.iterations // max(1, steps_per_epoch)), self.iterations


class SegmentationSet:
    """(normalised image, label) pairs: the dataset's images with labels from a folder of PNGs
    (``labels_dir``) or the dataset's own masks (``labels_dir`` None)."""

    def __init__(self, voc, labels_dir: str | Path | None, settings: SegmenterSettings):
        import torch
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        self.voc = voc
        self.labels_dir = Path(labels_dir) if labels_dir is not None else None
        if self.labels_dir is not None:
            if not self.labels_dir.is_dir():
                raise UserError(f"{self.labels_dir}: label folder not found")
            missing = [i for i in voc.ids if not (self.labels_dir / f"{i}.png").exists()]
            if missing:
                raise UserError(
                    f"{self.labels_dir}: no label for {len(missing)} image(s) of split {voc.split}, "
                    f"e.g. {self.labels_dir / (missing[0] + '.png')}"
                )
        else:
            missing = [i for i in voc.ids if not voc.mask_path(i).exists()]
            if missing:
                raise UserError(f"{voc.mask_path(missing[0])}: ground-truth mask missing ({len(missing)} in all)")
        low, high = settings.scale_range
        crop = settings.crop_size
        self.transform = v2.Compose(
            [
                _RandomRescale(low, high),
                v2.RandomHorizontalFlip(),
                v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Mask: 255, "others": 0}),
            ]
        )
        j = settings.color_jitter
        self.jitter = v2.ColorJitter(brightness=j, contrast=j, saturation=j) if j > 0 else None
        self.torch = torch

    def __len__(self) -> int:
        return len(self.voc)

    def label(self, image_id: str):
        """The whole label array, checked (values 0..C or 255) before any crop can hide a bad pixel."""
        from drs.data.voc import check_label_values, read_label_png

        if self.labels_dir is None:
            return self.voc.load_mask(image_id)  # checks the values itself
        path = self.labels_dir / f"{image_id}.png"
        return check_label_values(read_label_png(path), self.voc.num_classes, path)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        from drs.data.torchdata import normalize

        torch = self.torch
        image_id = self.voc.ids[index]
        array = self.voc.load_image(image_id)
        label = self.label(image_id)
        if label.shape != array.shape[:2]:
            where = self.labels_dir / f"{image_id}.png" if self.labels_dir else self.voc.mask_path(image_id)
            raise UserError(f"{where}: label size {label.shape} differs from its image's {array.shape[:2]}")
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(label.astype("int64")))
        if self.jitter is not None:
            image = self.jitter(image)
        image, mask = self.transform(image, mask)
        return normalize(image.as_subclass(torch.Tensor)), mask.as_subclass(torch.Tensor)


class _RandomRescale:
    """Scale image and mask by one random factor in [low, high] (bilinear / nearest)."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, image, mask):
        import random

        from torchvision.transforms import v2
        from torchvision.transforms.v2 import functional as TF

        factor = random.uniform(self.low, self.high)
        h, w = image.shape[-2:]
        size = [max(1, round(h * factor)), max(1, round(w * factor))]
        image = TF.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
        return image, mask


def build_segmenter(num_classes: int, settings: SegmenterSettings):
    """DeepLabV3+ as the settings describe; ``pretrained`` is none, imagenet or a ResNet weights file."""
    from drs.models.deeplab import deeplabv3plus

    weights = settings.weights
    path = None
    if weights is not None and weights != "imagenet":
        path, weights = Path(weights), None
    model = deeplabv3plus(
        num_classes,
        backbone=settings.backbone,
        output_stride=settings.output_stride,
        width=settings.width,
        weights_backbone="IMAGENET1K_V1" if weights == "imagenet" else None,
    )
    if path is not None:
        load_backbone_file(model, path)
    return model


def load_backbone_file(model, path: Path) -> None:
    """ResNet weights from a file (a torchvision ResNet state dict; its ``fc`` is ignored)."""
    import torch

    if not path.exists():
        raise UserError(f"backbone weights file {path}: not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"backbone weights file {path}: cannot be read as a PyTorch state dict ({err})") from None
    if not isinstance(state, dict):
        raise UserError(f"backbone weights file {path}: expected a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        model.backbone.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"backbone weights file {path}: does not fit {model.config['backbone']} ({err})") from None


def train_segmenter(
    dataset: str | Path,
    split: str,
    labels: str | Path | None,
    out_dir: str | Path,
    settings: SegmenterSettings,
    stop_after_steps: int | None = None,
) -> Path:
    """Train on ``labels`` (a folder of label PNGs; None: the dataset's ground-truth masks)."""
    import torch
    import torch.nn.functional as F

    from drs.data.fingerprint import split_fingerprint
    from drs.data.voc import VOCDataset
    from dataclasses import replace

    from drs.train import fit, save_model, poly_decay, seed_everything

    out_dir = Path(out_dir)
    voc = VOCDataset(dataset, split)
    data = SegmentationSet(voc, labels, settings)
    seed_everything(settings.seed)
    model = build_segmenter(len(voc.class_names), settings)
    optimizer = torch.optim.SGD(
        model.parameter_groups(settings.lr), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    loader = settings.loader(data)
    epochs, total_steps = settings.schedule(len(loader))
    loop = replace(settings.loop, epochs=epochs, max_steps=settings.iterations)
    per_step = settings.poly_step == "iteration"

    def step_loss(model, batch, device):
        images, targets = (t.to(device, non_blocking=True) for t in batch)
        # a sum and a pixel count: under torchrun the loop divides by the count over all processes,
        # so each labelled pixel weighs the same as in one process
        loss = F.cross_entropy(model(images), targets, ignore_index=255, reduction="sum")
        return loss, (targets != 255).sum()

    supervision = "full" if labels is None else "image"
    record = {
        "kind": "segmenter",
        "model_config": model.config,
        "settings": asdict(settings),
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
    log.info(
        "training DeepLabV3+ (%s, output stride %d, width %g) on %d images of %s/%s with %s, %d epochs "
        "(%d steps, poly per %s)",
        settings.backbone,
        settings.output_stride,
        settings.width,
        len(data),
        dataset,
        split,
        "ground-truth masks" if labels is None else f"labels from {labels}",
        epochs,
        total_steps,
        settings.poly_step,
    )
    best = _BestOnVal(model, record, out_dir, settings, VOCDataset(dataset, settings.val_split)) if settings.val_every else None
    fit(
        model,
        optimizer,
        loader,
        step_loss,
        loop,
        out_dir,
        lr_at_epoch=None if per_step else poly_decay(epochs, settings.poly_power),
        lr_at_step=poly_decay(total_steps, settings.poly_power) if per_step else None,
        after_step=best,
        name=f"segmenter[{supervision}]",
        extra_state={"record": record},
        stop_after_steps=stop_after_steps,
    )
    return save_model(model, record, out_dir)


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
            chosen = {"split": s.val_split, "step": step, "every": s.val_every, "miou": miou, "protocol": s.val_protocol}
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
    p.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    p.add_argument("--split", default="train", help="id list to train on (default: train)")
    p.add_argument("--labels", required=True, help=f"folder of <id>.png labels, or '{GROUND_TRUTH}'")
    p.add_argument("--out", required=True, help="output folder (model.pt, last.pt)")
    p.add_argument("--settings", default="{}", help="training settings as JSON (the config's `segmenter:` section)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    values = json_object(args.settings, "--settings")
    labels = None if args.labels == GROUND_TRUTH else args.labels
    train_segmenter(args.dataset, args.split, labels, args.out, SegmenterSettings.from_dict(values))
    return 0
