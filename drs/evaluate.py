"""`drs evaluate`: DeepLabV3+ predictions on a split, scored against its ground truth.

Stage 7, under a named protocol (recorded as ``protocol`` in the metrics):

- ``full``: each image is predicted at its own size (optionally at several scales, each also
  flipped, averaging the softmax scores at the image's size) and scored on its whole mask.
- ``reference``: the DRS authors' ``--crop_val`` (DeepLabV3Plus-Pytorch ``main.py``/``eval.py``):
  the image and mask resized to shorter side 513 and centre-cropped to 513 x 513, one scale, no
  flip, scored on that crop (:func:`reference_crop`). The predictions are then crop-sized.

Predictions are written as palette PNGs ``<predictions>/<id>.png`` and added to the confusion
matrix of :mod:`drs.metrics`, the code that scores every stage. The metrics file
(``segmentation.json``) holds mIoU, per-class IoU, pixel accuracy and the confusion matrix (rows
ground truth, columns prediction); with ``--crf`` also the same scores after the authors' dense CRF
(:mod:`drs.crf`, on every core) under ``crf``. A split without masks (VOC test) is predicted for the
evaluation server instead (``--submission``: its layout and a ``.tar.gz``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drs.errors import UserError
from drs.settings import EvaluationSettings, add_settings_argument, schema_properties, settings_from_args

log = logging.getLogger("drs.evaluate")

KIND = "predictions"  # the kind of folder `drs evaluate` publishes (fileio.MARKER)
SUBMISSION_KIND = "VOC test-server submission"  # the folder beside the submission archive


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

        from drs.data.transforms import to_normalized_tensor

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
                logits = F.interpolate(
                    self.model(batch).float(), size=(height, width), mode="bilinear", align_corners=False
                )
                prob = logits.softmax(1)
                prob = (prob[0] + prob[1].flip(-1)) / 2 if self.flip else prob[0]
                total = prob if total is None else total + prob
        return (total / len(self.scales)).cpu().numpy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.scores(image).argmax(0).astype(np.uint8)


PROTOCOLS = tuple(schema_properties("evaluation")["protocol"]["enum"])
REFERENCE_CROP = 513  # the reference's --crop_size with --crop_val
SUBMISSION_DIR = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"  # the VOC server's layout


def reference_crop(image: np.ndarray, mask: np.ndarray | None, size: int = REFERENCE_CROP):
    """The reference's ``--crop_val`` (DeepLabV3Plus-Pytorch main.py / eval.py: ExtResize(513),
    ExtCenterCrop(513)): the shorter side resized to ``size`` (the longer to int(size x long /
    short)), bilinear for the image, nearest for the mask, then the ``size`` x ``size`` centre crop
    (offsets int(round((side - size) / 2))); torchvision's functional resize and center_crop on PIL
    images, the calls the reference makes. Scores are then counted on the cropped, resized mask."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    def crop(array, interpolation):
        pil = TF.resize(Image.fromarray(array), [size], interpolation=interpolation)
        return np.array(TF.center_crop(pil, [size, size]))

    out_image = crop(image, InterpolationMode.BILINEAR)
    return out_image, (None if mask is None else crop(mask, InterpolationMode.NEAREST))


def validation_miou(model, voc, protocol: str = "reference", crop_size: int = REFERENCE_CROP) -> float:
    """mIoU of a model being trained (left in the mode it was in) on a split, one scale, no flip,
    under ``protocol``: the reference's periodic validation (main.py's ``validate``)."""
    import torch

    from drs.data.transforms import to_normalized_tensor
    from drs.metrics import SegmentationScore

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
                logits = model(to_normalized_tensor(image)[None].to(device))
                score.add(logits[0].argmax(0).to(torch.uint8).cpu().numpy(), mask)
    finally:
        model.train(training)
    return score.result(list(voc.class_names))["miou"]


def _describe_protocol(split, count, protocol, crop_size, scales, flip, crf, record, submission) -> dict:
    """What a figure was measured under (segmentation.json's ``protocol``)."""
    from drs.crf import REFERENCE as CRF_REFERENCE

    if protocol == "reference":
        crop = f"shorter side resized to {crop_size}, {crop_size}x{crop_size} centre crop (scored on the resized crop)"
    else:
        crop = "none (whole images at their own size)"
    return {
        "name": protocol,
        "split": split,
        "num_images": count,
        "crop": crop,
        "scales": list(scales),
        "flip": bool(flip),
        "crf": CRF_REFERENCE.as_dict() if crf else None,
        "checkpoint": _checkpoint_choice(record),
        "selected_on_val": bool(record.get("selected_on_val")),
        "scoring": None
        if submission
        else "confusion matrix over all pixels of the split, 255 in the ground truth left out",
    }


def _checkpoint_choice(record: dict) -> str:
    if record.get("imported_from"):
        return "imported"
    if record.get("selected_on_val"):
        best = record["selected_on_val"]
        return f"best on {best['split']} (step {best['step']} of validations every {best['every']}, mIoU {best['miou']:.4f})"
    return "last"


def evaluate(
    checkpoint: str | Path,
    dataset: str | Path,
    split: str,
    predictions_dir: str | Path,
    settings: EvaluationSettings | None = None,
    crf_workers: int | None = None,
    submission: str | Path | None = None,
) -> dict:
    """Predict every image of the split into ``predictions_dir`` (published when complete) and score
    the predictions; returns the metrics (see the module's docstring). An existing ``predictions_dir``
    is replaced only if this command wrote it (fileio.check_replaceable_dir); none inside ``dataset``.

    ``settings`` (the config's ``evaluation`` section; default: the schema's): ``protocol`` is
    ``full`` (whole images at ``scales``, with ``flip``) or ``reference`` (the authors' crop of
    ``crop_size``: :func:`reference_crop`, one scale, no flip). ``crf`` also scores the dense-CRF
    labels (:mod:`drs.crf`, on ``crf_workers`` processes) under ``result["crf"]``. A split without
    masks (VOC test) is not scored: its predictions (after the CRF with ``crf``) go to the test
    server's layout under ``submission`` (a ``.tar.gz`` path; the folder beside it, without the
    suffix, holds ``results/VOC2012/Segmentation/comp6_test_cls/<id>.png``).
    """
    import torch

    from drs.data.voc import VOCDataset, save_label_png
    from drs.fileio import check_replaceable_dir, publishing_dir
    from drs.metrics import SegmentationScore

    s = settings or EvaluationSettings()
    scales, flip, protocol, crop_size, crf = s.scales, s.flip, s.protocol, s.crop_size, s.crf
    if protocol not in PROTOCOLS:
        raise UserError(f"evaluation protocol {protocol!r}: expected one of {list(PROTOCOLS)}")
    if protocol == "reference" and (list(scales) != [1.0] or flip):
        raise UserError(
            f"evaluation protocol 'reference' is one scale without flip (the authors' --crop_val); got scales "
            f"{list(scales)}{' and flip' if flip else ''}: use protocol 'full' for those"
        )
    check_replaceable_dir(predictions_dir, KIND, dataset)
    voc = VOCDataset(dataset, split)
    present = [voc.mask_path(i).exists() for i in voc.ids]
    scored = all(present)
    if not scored and any(present):
        first = voc.ids[present.index(False)]
        raise UserError(
            f"{voc.mask_path(first)}: mask missing ({present.count(False)} of {len(present)} in split {split})"
        )
    if not scored:
        if submission is None:
            raise UserError(
                f"{voc.root / voc.mask_dir}: split {split} has no masks to score; give a submission archive to write"
            )
        if protocol != "full":
            raise UserError(
                f"split {split} has no masks: a test-server submission needs whole images (protocol 'full')"
            )
        submission = Path(submission)
        if not submission.name.endswith(".tar.gz"):
            raise UserError(f"{submission}: the submission archive must end in .tar.gz")
    predictor = Predictor(checkpoint, scales=scales, flip=flip)
    if predictor.class_names != list(voc.class_names):
        raise UserError(
            f"{checkpoint}: trained on classes {predictor.class_names}, but {dataset} has {list(voc.class_names)}"
        )
    log.info(
        "evaluating %s on %d images of %s/%s (protocol %s, scales %s%s%s) on %s",
        checkpoint,
        len(voc),
        dataset,
        split,
        protocol,
        list(predictor.scales),
        " + flip" if flip else "",
        " + dense CRF" if crf else "",
        predictor.device,
    )
    score = SegmentationScore(len(voc.class_names))
    crf_score = SegmentationScore(len(voc.class_names))
    pool = None
    if crf:
        from drs.crf import CRFPool

        pool = CRFPool(crf_workers)
    masks: dict[str, np.ndarray | None] = {}
    start = time.perf_counter()
    crf_seconds = 0.0
    try:
        with publishing_dir(predictions_dir, replace=True, kind=KIND, dataset=dataset) as folder:
            crf_folder = folder / ".crf"  # CRF labels of a submission, moved into its layout below
            crf_folder.mkdir()

            def take(done):
                for image_id, labels in done:
                    mask = masks.pop(image_id)
                    if mask is not None:
                        crf_score.add(labels, mask)
                    else:
                        save_label_png(crf_folder / f"{image_id}.png", labels)

            for n, image_id in enumerate(voc.ids, 1):
                image = voc.load_image(image_id)
                mask = voc.load_mask(image_id) if scored else None
                if mask is not None and mask.shape != image.shape[:2]:
                    raise UserError(
                        f"{voc.mask_path(image_id)}: mask size {mask.shape} differs from its image's {image.shape[:2]}"
                    )
                if protocol == "reference":
                    image, mask = reference_crop(image, mask, crop_size)
                prob = predictor.scores(image)
                prediction = prob.argmax(0).astype(np.uint8)
                if mask is not None:
                    try:
                        score.add(prediction, mask)
                    except ValueError as err:
                        raise UserError(f"{voc.mask_path(image_id)}: {err}") from None
                save_label_png(folder / f"{image_id}.png", prediction)
                if pool is not None:
                    masks[image_id] = mask
                    tick = time.perf_counter()
                    take(pool.submit(image_id, image, prob))
                    crf_seconds += time.perf_counter() - tick
                if n % 50 == 0 or n == len(voc):
                    log.info("%d/%d images, %.1f img/s", n, len(voc), n / (time.perf_counter() - start))
            if pool is not None:
                tick = time.perf_counter()
                take(pool.drain())
                crf_seconds += time.perf_counter() - tick
            if not scored:
                _write_submission(crf_folder if crf else folder, voc.ids, submission)
            for leftover in crf_folder.iterdir():
                leftover.unlink()
            crf_folder.rmdir()
    finally:
        if pool is not None:
            pool.close()
    if predictor.device.type == "cuda":
        torch.cuda.empty_cache()
    names = list(voc.class_names)
    used_scales = [1.0] if protocol == "reference" else list(predictor.scales)
    result = score.result(names) if scored else {"num_images": len(voc)}
    result.update(
        class_names=names,
        split=split,
        dataset=str(dataset),
        stage="segmentation" if scored else "test-submission",
        supervision=predictor.record.get("supervision"),
        labels=predictor.record.get("labels"),
        checkpoint=str(checkpoint),
        scales=used_scales,
        flip=flip,
        multi_scale=len(used_scales) > 1 or flip,
        predictions=str(predictions_dir),
        protocol=_describe_protocol(
            split, len(voc), protocol, crop_size, used_scales, flip, crf, predictor.record, not scored
        ),
        seconds=round(time.perf_counter() - start, 2),
    )
    if crf and scored:
        crf_result = crf_score.result(names)
        crf_result.pop("confusion_matrix")
        result["crf"] = {**crf_result, "seconds_waiting": round(crf_seconds, 2)}
    if not scored:
        result["submission"] = str(submission)
    return result


def _write_submission(labels_dir: Path, ids: list[str], archive: Path) -> None:
    """``<archive without .tar.gz>/results/VOC2012/Segmentation/comp6_test_cls/<id>.png`` and the
    archive holding that ``results/`` tree (what the VOC evaluation server takes), both published
    atomically."""
    import shutil
    import tarfile

    from drs.fileio import publishing_dir

    folder = archive.parent / archive.name[: -len(".tar.gz")]
    archive.parent.mkdir(parents=True, exist_ok=True)
    with publishing_dir(folder, replace=True, kind=SUBMISSION_KIND, suffixes=None) as tree:
        target = tree / SUBMISSION_DIR
        target.mkdir(parents=True)
        for image_id in ids:
            shutil.copyfile(labels_dir / f"{image_id}.png", target / f"{image_id}.png")
        partial = archive.parent / f".{archive.name}.partial"
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(tree / "results", arcname="results")
        os.replace(partial, archive)


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    import argparse

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
    add_settings_argument(p, EvaluationSettings)
    hand = {"default": argparse.SUPPRESS}  # given by hand (or by a rule): overrides the key of --settings
    p.add_argument("--scales", type=positive_float, nargs="+", help="override evaluation.scales: input scales", **hand)
    p.add_argument(
        "--flip", action="store_true", help="override evaluation.flip: also predict the mirrored images", **hand
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        **hand,
        help="override evaluation.protocol: full, whole images at the scales; reference, the authors' centre "
        "crop of the image resized to shorter side crop_size, one scale, no flip",
    )
    p.add_argument(
        "--crop-size", type=int, help="override evaluation.crop_size: crop of the reference protocol", **hand
    )
    p.add_argument("--crf", action="store_true", help="override evaluation.crf: also score dense-CRF labels", **hand)
    p.add_argument("--crf-workers", type=int, help="processes for the CRF (default: every usable core)")
    p.add_argument(
        "--submission", help="for a split without masks (VOC test): the .tar.gz to write for the evaluation server"
    )
    p.add_argument("--experiment", help="experiment name recorded in the metrics")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from drs.fileio import atomic_write_text, check_outside_dataset

    check_outside_dataset(args.out, args.dataset)
    settings = settings_from_args(EvaluationSettings, args)
    result = evaluate(
        args.model,
        args.dataset,
        args.split,
        args.predictions,
        settings,
        crf_workers=args.crf_workers,
        submission=args.submission,
    )
    if args.experiment:
        result["experiment"] = args.experiment
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if "miou" not in result:
        print(f"{args.out}: {result['num_images']} predictions of split {result['split']} in {result['submission']}")
        return 0
    log.info("%s: mIoU %.3f, pixel accuracy %.3f", args.out, result["miou"], result["pixel_accuracy"])
    crf = f", with CRF {result['crf']['miou']:.4f}" if "crf" in result else ""
    print(f"{args.out}: mIoU {result['miou']:.4f}{crf}, pixel accuracy {result['pixel_accuracy']:.4f}")
    return 0
