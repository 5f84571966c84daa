"""`drs train-refiner`: localization-map refinement learning.

A second network, the classifier's VGG-16 with the same extra layers but no DRS module, outputs C
maps upsampled to its input size and learns, with a mean-squared error, to reproduce the
classifier's localization maps, where each pixel keeps only its arg-max class (the other classes
are 0 there). Its targets come from the classifier's HDF5 map store; the image and its target
share the geometric augmentation (resize, flip, crop), colour jitter touches the image only. Adam,
as in the paper. Its own multi-scale predictions (``drs extract-maps --model`` on its checkpoint)
are the refined maps.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np

from drs.errors import UserError
from drs.fileio import json_object
from drs.settings import NetworkSettings

log = logging.getLogger("drs.refiner")



@dataclass
class RefinerSettings(NetworkSettings):
    """Defaults are the paper's (Adam, lr 1e-4, 30 epochs, ImageNet VGG-16); config.yaml scales them."""

    section: ClassVar[str] = "refiner"

    epochs: int = 30
    lr: float = 0.0001
    # the reference's run.sh: --decay_points='10,20' (x0.1 each, utils/my_optim.py reduce_lr)
    lr_decay_epochs: list[int] = field(default_factory=lambda: [10, 20])
    # True: resize to input_size, random crop_size crop (ours); False: resize to crop_size, no
    # crop, as the reference's utils/LoadData_refine.py (Resize(crop_size) then a no-op RandomCrop)
    random_crop: bool = True
    # the new layers' (extra convs, classifier) initialisation: "he" as the classifier's, or
    # "normal" N(0, 0.01) weights and zero biases as the reference's models/vgg_refine.py
    new_layer_init: str = "he"

    def check(self) -> None:
        super().check()
        if self.new_layer_init not in NEW_LAYER_INITS:
            raise UserError(
                f"config key 'refiner.new_layer_init': {self.new_layer_init!r}; expected one of {list(NEW_LAYER_INITS)}"
            )


NEW_LAYER_INITS = ("he", "normal")


def init_new_layers(model, how: str) -> None:
    """Re-initialise the refiner's new layers (extra convs and classifier) ``how`` (see RefinerSettings)."""
    import torch
    from torch import nn

    if how == "he":
        return  # drs_vgg16's own initialisation
    with torch.no_grad():
        for part in (model.extra, model.classifier):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                    nn.init.zeros_(m.bias)


def arg_max_only(maps: np.ndarray) -> np.ndarray:
    """(C, H, W) scores -> the same, with every class but each pixel's highest set to 0."""
    if maps.shape[0] == 0:
        return maps
    best = maps.argmax(axis=0)
    out = np.zeros_like(maps)
    np.put_along_axis(out, best[None], np.take_along_axis(maps, best[None], axis=0), axis=0)
    return out


class RefineSet:
    """(normalised image, target maps (C, h, w)) pairs from a dataset split and its map store."""

    def __init__(self, voc, store_path: str | Path, input_size: int, crop_size: int, random_crop: bool = True):
        import torch
        from torchvision.transforms import v2

        from drs.data.fingerprint import check_store_data
        from drs.maps import MapStore

        self.voc = voc
        self.store_path = str(store_path)
        with MapStore(store_path) as store:
            missing = [i for i in voc.ids if i not in store]
            if list(store.class_names) != list(voc.class_names):
                raise UserError(f"{store_path}: classes {store.class_names} differ from the dataset's {list(voc.class_names)}")
            if missing:
                raise UserError(f"{store_path}: no maps for {len(missing)} image(s) of split {voc.split}, e.g. {missing[:3]}")
            check_store_data(store, voc)  # the targets come from these images
        self._store = None
        self.jitter = v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
        if random_crop:
            steps = [v2.Resize((input_size, input_size), antialias=True), v2.RandomHorizontalFlip(), v2.RandomCrop(crop_size)]
        else:  # the reference's LoadData_refine.py: the whole image at crop_size x crop_size
            steps = [v2.Resize((crop_size, crop_size), antialias=True), v2.RandomHorizontalFlip()]
        self.geometric = v2.Compose(steps)
        self.torch = torch

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        from drs.data.torchdata import normalize
        from drs.maps import MapStore

        if self._store is None:  # opened lazily: once per data-loading process
            self._store = MapStore(self.store_path)
        torch = self.torch
        image_id = self.voc.ids[index]
        array = self.voc.load_image(image_id)
        maps = self._store.dense(image_id)
        if maps.shape[1:] != array.shape[:2]:  # the transforms would resize both and hide the mismatch
            raise UserError(
                f"{self.store_path}: maps of {image_id!r} are {maps.shape[1]}x{maps.shape[2]} but its image "
                f"{self.voc.image_path(image_id)} is {array.shape[0]}x{array.shape[1]}; extract the maps of this dataset again"
            )
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))
        target = tv_tensors.Image(torch.from_numpy(arg_max_only(maps)))
        image, target = self.geometric(self.jitter(image), target)
        return normalize(image.as_subclass(torch.Tensor)), target.as_subclass(torch.Tensor)


def refined_maps(model, images):
    """The refiner's C maps at the input's size."""
    import torch.nn.functional as F

    return F.interpolate(model.class_maps(images), size=images.shape[-2:], mode="bilinear", align_corners=False)


def train_refiner(
    dataset: str | Path,
    split: str,
    store: str | Path,
    out_dir: str | Path,
    settings: RefinerSettings,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    import torch
    import torch.nn.functional as F

    from drs.classifier import build_classifier
    from drs.data.fingerprint import split_fingerprint
    from drs.data.voc import VOCDataset
    from drs.fileio import file_sha256
    from drs.train import fit, save_model, seed_everything, step_decay

    out_dir = Path(out_dir)
    voc = VOCDataset(dataset, split)
    data = RefineSet(voc, store, settings.input_size, settings.crop_size, settings.random_crop)
    seed_everything(settings.seed)
    model = build_classifier(voc.num_classes, settings, drs="none", delta=None)  # the same network, no DRS
    init_new_layers(model, settings.new_layer_init)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loader = settings.loader(data)

    def step_loss(model, batch, device):
        images, targets = (t.to(device, non_blocking=True) for t in batch)
        return F.mse_loss(refined_maps(model, images).float(), targets)

    record = {
        "kind": "refiner",
        "model_config": model.config,
        "settings": asdict(settings),
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": split,
        "targets": str(store),
        "targets_sha256": file_sha256(store),
        "data_fingerprint": split_fingerprint(voc, ("images",)).as_dict(),  # a rerun on changed data starts afresh
    }
    log.info("training the refiner on %d images of %s/%s against %s, %d epochs", len(data), dataset, split, store, settings.epochs)
    fit(
        model,
        optimizer,
        loader,
        step_loss,
        settings.loop,
        out_dir,
        lr_at_epoch=step_decay(settings.lr_decay_epochs),
        name="refiner",
        extra_state={"record": record},
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )
    return save_model(model, record, out_dir)


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-refiner",
        help="train the refinement network on a classifier's map store",
        description="Localization-map refinement learning: a VGG-16 without DRS learns (MSE) to reproduce "
        "the classifier's maps, each pixel keeping only its arg-max class. Resumes from OUT/last.pt.",
    )
    p.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    p.add_argument("--split", default="train", help="id list to train on (default: train)")
    p.add_argument("--store", required=True, help="the classifier's map store of that split (targets)")
    p.add_argument("--out", required=True, help="output folder (model.pt, last.pt)")
    p.add_argument("--settings", default="{}", help="training settings as JSON (the config's `refiner:` section)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    values = json_object(args.settings, "--settings")
    train_refiner(args.dataset, args.split, args.store, args.out, RefinerSettings.from_dict(values))
    return 0
