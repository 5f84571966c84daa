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
