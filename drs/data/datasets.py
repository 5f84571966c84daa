"""Every training set: PyTorch datasets over a VOC-layout folder, one per trainer.

* :class:`ClassificationSet` (train-classifier): (image, multi-hot labels);
* :class:`RefineSet` (train-refiner): (image, the classifier's maps, arg-max only);
* :class:`SegmentationSet` (train-segmenter, DeepLabV3+): (image, label from a folder of PNGs or the masks);
* :class:`DeepLabV2Set` (train-segmenter, DeepLab-V2): (caffe-normalised image, label, the image's
  classes), with the reference's augmentation.

Their augmentation presets are in :mod:`drs.data.transforms`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from drs.data.fingerprint import check_store_data
from drs.data.transforms import (
    ReferenceScaleCrop,
    caffe_normalize,
    color_jitter,
    normalize,
    reference_jitter,
    refine_geometry,
    segmentation_geometry,
)
from drs.data.voc import IGNORE, VOCDataset, check_label_values, read_label_png
from drs.errors import UserError
from drs.store.reader import MapStore
from drs.util.memory import release_free_memory

#: RefineSet hands the heap's free pages back every this many items (per process)
TRIM_EVERY = 50


class ClassificationSet(Dataset):
    """(image tensor, multi-hot label vector) pairs; labels are read once, up front."""

    def __init__(self, voc: VOCDataset, transform):
        self.voc = voc
        self.transform = transform
        self.targets = np.stack([voc.multi_hot(i) for i in voc.ids])

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int):
        image = self.voc.load_image(self.voc.ids[index])
        return self.transform(image), torch.from_numpy(self.targets[index])


def arg_max_only(maps: np.ndarray) -> np.ndarray:
    """(C, H, W) scores -> the same, with every class but each pixel's highest set to 0."""
    if maps.shape[0] == 0:
        return maps
    best = maps.argmax(axis=0)
    out = np.zeros_like(maps)
    np.put_along_axis(out, best[None], np.take_along_axis(maps, best[None], axis=0), axis=0)
    return out


class RefineSet(Dataset):
    """(normalised image, target maps (C, h, w)) pairs from a dataset split and its map store."""

    def __init__(self, voc, store_path: str | Path, input_size: int, crop_size: int, random_crop: bool = True):
        self.voc = voc
        self.store_path = str(store_path)
        with MapStore(store_path) as store:
            missing = [i for i in voc.ids if i not in store]
            if list(store.class_names) != list(voc.class_names):
                raise UserError(
                    f"{store_path}: classes {store.class_names} differ from the dataset's {list(voc.class_names)}"
                )
            if missing:
                raise UserError(
                    f"{store_path}: no maps for {len(missing)} image(s) of split {voc.split}, e.g. {missing[:3]}"
                )
            check_store_data(store, voc)  # the targets come from these images
        self._store = None
        self._reads = 0  # items read by this process (each loader worker counts its own)
        self.jitter = reference_jitter()
        self.geometric = refine_geometry(input_size, crop_size, random_crop)

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int):
        if self._store is None:  # opened lazily: once per data-loading process
            self._store = MapStore(self.store_path)
        self._reads += 1
        if self._reads % TRIM_EVERY == 0:
            # the store's small long-lived HDF5 blocks between each item's large buffers fragment
            # the heap: without a trim it grew ~0.7 MB an item at 500 x 375 (drs.util.memory)
            release_free_memory()
        image_id = self.voc.ids[index]
        array = self.voc.load_image(image_id)
        record = self._store.read(image_id)
        if tuple(record.size) != array.shape[:2]:  # the transforms would resize both and hide the mismatch
            raise UserError(
                f"{self.store_path}: maps of {image_id!r} are {record.size[0]}x{record.size[1]} but its image "
                f"{self.voc.image_path(image_id)} is {array.shape[0]}x{array.shape[1]}; extract the maps of this "
                "dataset again"
            )
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))
        classes, maps = record.classes, record.float()
        if classes.size == 0:
            dense = tv_tensors.Image(torch.from_numpy(arg_max_only(self._store.dense(image_id))))
            image, target = self.geometric(self.jitter(image), dense)
            return normalize(image.as_subclass(torch.Tensor)), target.as_subclass(torch.Tensor)
        # Only the stored classes' channels are transformed, then placed among the zero channels of
        # the others: each channel is resized on its own, so the target is the dense path's (with
        # classes in order, the arg-max picks the same class: the others' scores are 0 <= any
        # stored score, which a store keeps in [0, score_scale]), at K of C channels' cost.
        order = np.argsort(classes, kind="stable")
        sparse = tv_tensors.Image(torch.from_numpy(arg_max_only(maps[order])))
        image, sparse = self.geometric(self.jitter(image), sparse)
        target = torch.zeros((self._store.num_classes, *sparse.shape[1:]), dtype=sparse.dtype)
        target[torch.from_numpy(classes[order].astype(np.int64) - 1)] = sparse.as_subclass(torch.Tensor)
        return normalize(image.as_subclass(torch.Tensor)), target


class _LabelledImages(Dataset):
    """A dataset's images with labels from a folder of PNGs (``labels_dir``) or the dataset's own
    masks (``labels_dir`` None), every label there checked up front."""

    def __init__(self, voc, labels_dir: str | Path | None):
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

    def __len__(self) -> int:
        return len(self.voc)

    def label(self, image_id: str):
        """The whole label array, checked (values 0..C or 255) before any crop can hide a bad pixel."""
        if self.labels_dir is None:
            return self.voc.load_mask(image_id)  # checks the values itself
        path = self.labels_dir / f"{image_id}.png"
        return check_label_values(read_label_png(path), self.voc.num_classes, path)

    def image_and_label(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The image (HxWx3 uint8) and its whole label, of the same size (a UserError otherwise)."""
        array = self.voc.load_image(image_id)
        label = self.label(image_id)
        if label.shape != array.shape[:2]:
            where = self.labels_dir / f"{image_id}.png" if self.labels_dir else self.voc.mask_path(image_id)
            raise UserError(f"{where}: label size {label.shape} differs from its image's {array.shape[:2]}")
        return array, label


class SegmentationSet(_LabelledImages):
    """(normalised image, label) pairs for DeepLabV3+; ``settings`` (the segmenter's) give the
    augmentation."""

    def __init__(self, voc, labels_dir: str | Path | None, settings):
        super().__init__(voc, labels_dir)
        self.transform = segmentation_geometry(settings.scale_range, settings.crop_size, IGNORE)
        j = settings.color_jitter
        self.jitter = color_jitter(j) if j > 0 else None

    def __getitem__(self, index: int):
        array, label = self.image_and_label(self.voc.ids[index])
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(label.astype("int64")))
        if self.jitter is not None:
            image = self.jitter(image)
        image, mask = self.transform(image, mask)
        return normalize(image.as_subclass(torch.Tensor)), mask.as_subclass(torch.Tensor)


class DeepLabV2Set(_LabelledImages):
    """(caffe-normalised image, label, classes present) triples for DeepLab-V2, with the reference's
    augmentation (:class:`drs.data.transforms.ReferenceScaleCrop`; ``settings``: the deeplabv2
    section). The classes are the image's labels in the dataset (its masks, or ``<split>_labels.txt``)
    as a (C + 1,) 0/1 vector, background always 1 (the reference's cls_labels)."""

    def __init__(self, voc, labels_dir: str | Path | None, settings):
        super().__init__(voc, labels_dir)
        self.augment = ReferenceScaleCrop(settings.scales, settings.crop_size, settings.flip, IGNORE)
        self.present = np.zeros((len(voc), voc.num_classes + 1), dtype=np.float32)
        self.present[:, 0] = 1.0
        for n, image_id in enumerate(voc.ids):
            self.present[n, voc.labels(image_id)] = 1.0

    def __getitem__(self, index: int):
        array, label = self.image_and_label(self.voc.ids[index])
        image = torch.from_numpy(array).permute(2, 0, 1).float()
        image, label = self.augment(image, torch.from_numpy(label.astype("int64")))
        return caffe_normalize(image), label, torch.from_numpy(self.present[index])
