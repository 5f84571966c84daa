"""`drs evaluate`: DeepLabV3+ predictions on a split, scored against its ground truth.

Stage 7. Each image is predicted at its own size (optionally at several scales, each also
flipped, averaging the softmax scores at the image's size), written as a palette PNG
``<predictions>/<id>.png``, and added to the confusion matrix of :mod:`drs.metrics`, the code that
scores every stage. The metrics file (``segmentation.json``) holds mIoU, per-class IoU, pixel
accuracy and the confusion matrix (rows ground truth, columns prediction).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drs.errors import UserError

log = logging.getLogger("drs.evaluate")

KIND = "predictions"  # the kind of folder `drs evaluate` publishes (fileio.MARKER)


class Predictor:
    """A trained DeepLabV3+ as a function: HxWx3 uint8 image -> HxW uint8 labels (0 background).

    ``scales`` are factors of the image's size; ``flip`` adds each scale's mirror image.
    """

    def __init__(self, checkpoint: str | Path, device=None, scales: Sequence[float] = (1.0,), flip: bool = False):
        import torch

        from drs.segmenter import load_segmenter
        from drs.train import pick_device

        if not scales or any(s <= 0 for s in scales):
            raise UserError(f"scales {list(scales)}: expected one or more positive factors")
        self.model, self.record = load_segmenter(checkpoint)
        self.device = torch.device(device) if device is not None else pick_device()
        self.model.to(self.device)
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.class_names = list(self.record["class_names"])

    def scores(self, image: np.ndarray):
        """(num_classes, H, W) float32 softmax scores, averaged over scales and flips."""
        import torch
        import torch.nn.functional as F

        from drs.data.torchdata import to_normalized_tensor

        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        height, width = image.shape[:2]
        x = to_normalized_tensor(image)[None].to(self.device)
        total = None
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for scale in self.scales:
                size = (max(8, round(height * scale)), max(8, round(width * scale)))
                xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if scale != 1 else x
                batch = torch.cat([xs, xs.flip(-1)]) if self.flip else xs
                logits = F.interpolate(self.model(batch).float(), size=(height, width), mode="bilinear", align_corners=False)
                prob = logits.softmax(1)
                prob = (prob[0] + prob[1].flip(-1)) / 2 if self.flip else prob[0]
                total = prob if total is None else total + prob
        return (total / len(self.scales)).cpu().numpy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.scores(image).argmax(0).astype(np.uint8)


def evaluate(
    checkpoint: str | Path,
    dataset: str | Path,
    split: str,
    predictions_dir: str | Path,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> dict:
    """Predict every image of the split into ``predictions_dir`` (published when complete) and score
    the predictions; returns the metrics (see the module's docstring). An existing ``predictions_dir``
    is replaced only if this command wrote it (fileio.check_replaceable_dir); none inside ``dataset``."""
    import torch

    from drs.data.voc import VOCDataset, save_label_png
    from drs.fileio import check_replaceable_dir, publishing_dir
    from drs.metrics import SegmentationScore

    check_replaceable_dir(predictions_dir, KIND, dataset)
    voc = VOCDataset(dataset, split)
    predictor = Predictor(checkpoint, scales=scales, flip=flip)
    if predictor.class_names != list(voc.class_names):
        raise UserError(
            f"{checkpoint}: trained on classes {predictor.class_names}, but {dataset} has {list(voc.class_names)}"
        )
    log.info(
        "evaluating %s on %d images of %s/%s (scales %s%s) on %s",
        checkpoint,
        len(voc),
        dataset,
        split,
        list(predictor.scales),
        " + flip" if flip else "",
        predictor.device,
    )
    score = SegmentationScore(len(voc.class_names))
    start = time.perf_counter()
    with publishing_dir(predictions_dir, replace=True, kind=KIND, dataset=dataset) as folder:
        for n, image_id in enumerate(voc.ids, 1):
            prediction = predictor(voc.load_image(image_id))
            mask = voc.load_mask(image_id)
            if mask.shape != prediction.shape:
                raise UserError(f"{voc.mask_path(image_id)}: mask size {mask.shape} differs from its image's {prediction.shape}")
            try:
                score.add(prediction, mask)
            except ValueError as err:
                raise UserError(f"{voc.mask_path(image_id)}: {err}") from None
            save_label_png(folder / f"{image_id}.png", prediction)
            if n % 50 == 0 or n == len(voc):
                log.info("%d/%d images, %.1f img/s", n, len(voc), n / (time.perf_counter() - start))
    if predictor.device.type == "cuda":
        torch.cuda.empty_cache()
    result = score.result(list(voc.class_names))
    result.update(
        class_names=list(voc.class_names),
        split=split,
        dataset=str(dataset),
        stage="segmentation",
        supervision=predictor.record.get("supervision"),
        labels=predictor.record.get("labels"),
        checkpoint=str(checkpoint),
        scales=list(predictor.scales),
        flip=flip,
        multi_scale=len(predictor.scales) > 1 or flip,
        predictions=str(predictions_dir),
        seconds=round(time.perf_counter() - start, 2),
    )
    return result


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    from drs.argtypes import positive_float

    p = sub.add_parser(
        "evaluate",
        help="predict a split with a trained DeepLabV3+ and score it (mIoU, per-class IoU, pixel accuracy)",
        description="Stage 7: predictions as palette PNGs and a metrics JSON with mIoU, per-class IoU, pixel "
        "accuracy and the confusion matrix (ground-truth pixels labelled 255 are left out).",
    )
    p.add_argument("--model", required=True, help="checkpoint of drs train-segmenter (model.pt)")
    p.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    p.add_argument("--split", default="val", help="id list to evaluate (default: val)")
    p.add_argument("--predictions", required=True, help="output folder of <id>.png predictions")
    p.add_argument("--out", required=True, help="metrics JSON to write (segmentation.json)")
    p.add_argument("--scales", type=positive_float, nargs="+", default=[1.0], help="input scales (default: 1.0)")
    p.add_argument("--flip", action="store_true", help="also predict the mirrored images")
    p.add_argument("--experiment", help="experiment name recorded in the metrics")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from drs.fileio import atomic_write_text, check_outside_dataset

    check_outside_dataset(args.out, args.dataset)
    result = evaluate(args.model, args.dataset, args.split, args.predictions, args.scales, args.flip)
    if args.experiment:
        result["experiment"] = args.experiment
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    log.info("%s: mIoU %.3f, pixel accuracy %.3f", args.out, result["miou"], result["pixel_accuracy"])
    print(f"{args.out}: mIoU {result['miou']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}")
    return 0
