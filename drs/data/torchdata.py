"""PyTorch datasets over a VOC-layout folder, with the paper's augmentation (torchvision v2)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from drs.data.voc import VOCDataset

# torchvision's ImageNet statistics, as used by its pretrained VGG-16.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def classification_transform(input_size: int, crop_size: int) -> v2.Compose:
    """The reference augmentation: resize to a square, flip, colour jitter, random crop."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((input_size, input_size), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1),
            v2.RandomCrop(crop_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def normalize(image: torch.Tensor) -> torch.Tensor:
    """3xHxW uint8 tensor -> float, normalised like training inputs."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (image.float().div(255) - mean) / std


def to_normalized_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> 3xHxW float, normalised like training inputs."""
    return normalize(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))


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
