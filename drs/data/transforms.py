"""The augmentation presets and input normalisation of every network (torchvision v2)."""

from __future__ import annotations

import random

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

# torchvision's ImageNet statistics, as used by its pretrained VGG-16 and ResNets.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: caffe's ImageNet mean of BGR pixels in 0..255, as DeepLab-V2's inputs (the reference's voc12.yaml)
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)


def color_jitter(strength: float, hue: float = 0.0) -> v2.ColorJitter:
    """Brightness, contrast and saturation jitter of ``strength`` (and hue of ``hue``)."""
    return v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=hue)


def reference_jitter() -> v2.ColorJitter:
    """The reference's colour jitter of the classifier's and refiner's images (utils/LoadData.py)."""
    return color_jitter(0.3, hue=0.1)


def classification_transform(input_size: int, crop_size: int) -> v2.Compose:
    """The reference augmentation: resize to a square, flip, colour jitter, random crop."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((input_size, input_size), antialias=True),
            v2.RandomHorizontalFlip(),
            reference_jitter(),
            v2.RandomCrop(crop_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def refine_geometry(input_size: int, crop_size: int, random_crop: bool) -> v2.Compose:
    """The refiner's geometric augmentation, shared by the image and its target maps: resize to
    ``input_size``, flip, random ``crop_size`` crop; without ``random_crop`` the whole image at
    ``crop_size`` x ``crop_size`` (the reference's LoadData_refine.py), flipped."""
    if random_crop:
        steps = [
            v2.Resize((input_size, input_size), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(crop_size),
        ]
    else:
        steps = [v2.Resize((crop_size, crop_size), antialias=True), v2.RandomHorizontalFlip()]
    return v2.Compose(steps)


def segmentation_geometry(scale_range, crop_size: int, ignore: int) -> v2.Compose:
    """DeepLabV3+'s augmentation of image and mask: random rescale in ``scale_range``, flip,
    random ``crop_size`` crop (the mask padded with ``ignore``, the image with 0)."""
    low, high = scale_range
    return v2.Compose(
        [
            RandomRescale(low, high),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Mask: ignore, "others": 0}),
        ]
    )


class RandomRescale:
    """Scale image and mask by one random factor in [low, high] (bilinear / nearest)."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, image, mask):
        factor = random.uniform(self.low, self.high)
        h, w = image.shape[-2:]
        size = [max(1, round(h * factor)), max(1, round(w * factor))]
        image = TF.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
        return image, mask


def normalize(image: torch.Tensor) -> torch.Tensor:
    """3xHxW uint8 tensor -> float, normalised like training inputs."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (image.float().div(255) - mean) / std


def to_normalized_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> 3xHxW float, normalised like training inputs."""
    return normalize(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))


def caffe_normalize(image: torch.Tensor) -> torch.Tensor:
    """3xHxW RGB tensor with values in 0..255 -> DeepLab-V2's input: BGR, the caffe mean subtracted,
    no division (float32)."""
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32).view(3, 1, 1)
    return image.float().flip(0) - mean


def to_caffe_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB array -> DeepLab-V2's input (:func:`caffe_normalize`)."""
    return caffe_normalize(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))


#: the input normalisation of each network (its model's ``input_normalization``)
NORMALIZATIONS = {"imagenet": to_normalized_tensor, "caffe": to_caffe_tensor}


class ReferenceScaleCrop:
    """DeepLab-V2's training augmentation (the reference's ``_BaseDataset._augmentation``): one
    scale factor drawn from ``scales`` (int-truncated sizes; the image bilinear, the label
    nearest), padding at the bottom and right to ``crop_size`` (the image with its caffe mean,
    which :func:`caffe_normalize` turns into 0, the label with ``ignore``), a random crop, a
    random horizontal flip (``flip``). Draws from Python's ``random``, as the reference does."""

    def __init__(self, scales, crop_size: int, flip: bool, ignore: int):
        self.scales, self.crop_size, self.flip, self.ignore = list(scales), crop_size, flip, ignore

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image``: 3xHxW float RGB in 0..255; ``label``: HxW int64."""
        factor = random.choice(self.scales)
        h, w = label.shape
        size = (int(h * factor), int(w * factor))
        image = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        label = TF.resize(label[None], list(size), interpolation=v2.InterpolationMode.NEAREST_EXACT)[0]
        pad_h, pad_w = max(self.crop_size - size[0], 0), max(self.crop_size - size[1], 0)
        if pad_h or pad_w:
            pad = (0, pad_w, 0, pad_h)
            image = torch.stack([torch.nn.functional.pad(c, pad, value=m) for c, m in zip(image, CAFFE_MEAN_BGR[::-1])])
            label = torch.nn.functional.pad(label, (0, pad_w, 0, pad_h), value=self.ignore)
        h, w = label.shape
        top = random.randint(0, h - self.crop_size)
        left = random.randint(0, w - self.crop_size)
        image = image[:, top : top + self.crop_size, left : left + self.crop_size]
        label = label[top : top + self.crop_size, left : left + self.crop_size]
        if self.flip and random.random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image, label
