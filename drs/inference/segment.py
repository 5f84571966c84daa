"""A trained segmenter as a function of an image, and the reference's evaluation crop.

:class:`Predictor`: HxWx3 uint8 image -> softmax scores or labels, at several scales and flips.
:func:`reference_crop`: the DRS authors' ``--crop_val`` (shorter side 513, 513 x 513 centre crop).
:func:`validation_miou`: a model being trained, scored on a split (the reference's periodic validation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from drs.data.transforms import NORMALIZATIONS
from drs.errors import UserError
from drs.evaluation.metrics import SegmentationScore
from drs.runtime.device import pick_device
from drs.store.model_files import load_segmenter


def input_tensor(model, image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 image -> the (3, H, W) input ``model`` takes: ImageNet-normalised RGB, or for
    DeepLab-V2 caffe's BGR with the mean subtracted (its ``input_normalization``)."""
    return NORMALIZATIONS[getattr(model, "input_normalization", "imagenet")](image)


def upsampled_logits(model, batch: torch.Tensor, size) -> torch.Tensor:
    """The model's logits of ``batch`` (float32), bilinearly resized to ``size`` (DeepLab-V2's come
    at 1/8 of the input, DeepLabV3+'s at the input's size)."""
    logits = model(batch).float()
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class Predictor:
    """A trained segmenter (DeepLabV3+ or DeepLab-V2) as a function: HxWx3 uint8 image -> HxW uint8
    labels (0 background).

    ``scales`` are factors of the image's size; ``flip`` adds each scale's mirror image. DeepLab-V2
    takes its own multi-scale maximum inside (1.0, 0.5, 0.75: the reference's MSC) at each scale.
    """

    def __init__(self, checkpoint: str | Path, device=None, scales: Sequence[float] = (1.0,), flip: bool = False):
        model, record = load_segmenter(checkpoint)
        self._use(model, record, device, scales, flip)

    @classmethod
    def of_model(cls, model, record: dict, device=None, scales: Sequence[float] = (1.0,), flip: bool = False):
        """A predictor of a network in memory (in eval mode) and its record (``class_names``...)."""
        predictor = cls.__new__(cls)
        predictor._use(model.eval(), record, device, scales, flip)
        return predictor

    def _use(self, model, record: dict, device, scales: Sequence[float], flip: bool) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise UserError(f"scales {list(scales)}: expected one or more positive factors")
        self.model, self.record = model, record
        self.device = torch.device(device) if device is not None else pick_device()
        self.model.to(self.device)
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.class_names = list(self.record["class_names"])

    def scores(self, image: np.ndarray):
        """(num_classes, H, W) float32 softmax scores, averaged over scales and flips."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        height, width = image.shape[:2]
        x = input_tensor(self.model, image)[None].to(self.device)
        total = None
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for scale in self.scales:
                size = (max(8, round(height * scale)), max(8, round(width * scale)))
                xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if scale != 1 else x
                batch = torch.cat([xs, xs.flip(-1)]) if self.flip else xs
                logits = upsampled_logits(self.model, batch, (height, width))
                prob = logits.softmax(1)
                prob = (prob[0] + prob[1].flip(-1)) / 2 if self.flip else prob[0]
                total = prob if total is None else total + prob
        return (total / len(self.scales)).cpu().numpy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.scores(image).argmax(0).astype(np.uint8)


REFERENCE_CROP = 513  # the reference's --crop_size with --crop_val


def reference_crop(image: np.ndarray, mask: np.ndarray | None, size: int = REFERENCE_CROP):
    """The reference's ``--crop_val`` (DeepLabV3Plus-Pytorch main.py / eval.py: ExtResize(513),
    ExtCenterCrop(513)): the shorter side resized to ``size`` (the longer to int(size x long /
    short)), bilinear for the image, nearest for the mask, then the ``size`` x ``size`` centre crop
    (offsets int(round((side - size) / 2))); torchvision's functional resize and center_crop on PIL
    images, the calls the reference makes. Scores are then counted on the cropped, resized mask."""

    def crop(array, interpolation):
        pil = TF.resize(Image.fromarray(array), [size], interpolation=interpolation)
        return np.array(TF.center_crop(pil, [size, size]))

    out_image = crop(image, InterpolationMode.BILINEAR)
    return out_image, (None if mask is None else crop(mask, InterpolationMode.NEAREST))


def validation_miou(model, voc, protocol: str = "reference", crop_size: int = REFERENCE_CROP) -> float:
    """mIoU of a model being trained (left in the mode it was in) on a split, one scale, no flip,
    under ``protocol``: the reference's periodic validation (main.py's ``validate``)."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    score = SegmentationScore(len(voc.class_names))
    try:
        with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
            for image_id in voc.ids:
                image, mask = voc.load_image(image_id), voc.load_mask(image_id)
                if protocol == "reference":
                    image, mask = reference_crop(image, mask, crop_size)
                logits = upsampled_logits(model, input_tensor(model, image)[None].to(device), mask.shape)
                score.add(logits[0].argmax(0).to(torch.uint8).cpu().numpy(), mask)
    finally:
        model.train(training)
    return score.result(list(voc.class_names))["miou"]
