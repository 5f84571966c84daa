"""Segmentation metrics from a confusion matrix: the same code scores every stage.

Ground-truth pixels labelled 255 are excluded. Predicted pixels labelled 255 (pseudo labels'
"ignore") are excluded from the matrix and counted, so a score says how much it left out.
"""

from __future__ import annotations

import numpy as np

from drs.data.voc import IGNORE


class SegmentationScore:
    """Accumulates a (num_labels x num_labels) confusion matrix; rows ground truth, columns prediction."""

    def __init__(self, num_labels: int):
        self.num_labels = num_labels
        self.matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
        self.ignored = 0  # valid ground-truth pixels the prediction left as IGNORE
        self.valid = 0  # ground-truth pixels that are not IGNORE
        self.images = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        valid = gt != IGNORE
        bad = valid & (gt >= self.num_labels)
        if bad.any():
            raise ValueError(f"ground-truth label {int(gt[bad].max())} outside 0..{self.num_labels - 1}")
        keep = valid & (pred != IGNORE)
        self.valid += int(valid.sum())
        self.ignored += int((valid & (pred == IGNORE)).sum())
        index = gt[keep].astype(np.int64) * self.num_labels + pred[keep].astype(np.int64)
        self.matrix += np.bincount(index, minlength=self.num_labels**2).reshape(self.num_labels, self.num_labels)
        self.images += 1

    def iou(self) -> np.ndarray:
        """Per-label IoU; NaN for a label absent from both ground truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def result(self, class_names) -> dict:
        iou = self.iou()
        total = self.matrix.sum()
        return {
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
            "pixel_accuracy": float(np.diag(self.matrix).sum() / total) if total else 0.0,
            "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
            "num_images": self.images,
            "ignored_fraction": self.ignored / self.valid if self.valid else 0.0,
            "confusion_matrix": self.matrix.tolist(),
        }
