"""DeepLabV3+ predictions on a split, scored against its ground truth.

Stage 7, under a named protocol (recorded as ``protocol`` in the metrics):

- ``full``: each image is predicted at its own size (optionally at several scales, each also
  flipped, averaging the softmax scores at the image's size) and scored on its whole mask.
- ``reference``: the DRS authors' ``--crop_val`` (DeepLabV3Plus-Pytorch ``main.py``/``eval.py``):
  the image and mask resized to shorter side 513 and centre-cropped to 513 x 513, one scale, no
  flip, scored on that crop (:func:`reference_crop`). The predictions are then crop-sized.

Predictions are written as palette PNGs ``<predictions>/<id>.png`` and added to the confusion
matrix of :mod:`drs.evaluation.metrics`, the code that scores every stage. The metrics file
(``segmentation.json``) holds mIoU, per-class IoU, pixel accuracy and the confusion matrix (rows
ground truth, columns prediction); with ``--crf`` also the same scores after the authors' dense CRF
(:mod:`drs.evaluation.crf`, on every core) under ``crf``. A split without masks (VOC test) is predicted for the
evaluation server instead (``--submission``: its layout and a ``.tar.gz``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

from drs.config.settings import EVALUATION_PROTOCOLS, EvaluationSettings
from drs.data.voc import VOCDataset, save_label_png
from drs.errors import UserError
from drs.evaluation.crf import CRFPool
from drs.evaluation.metrics import SegmentationScore
from drs.evaluation.protocol import network_description, segmentation_protocol
from drs.inference.segment import Predictor, reference_crop
from drs.util.files import check_replaceable_dir, publishing_dir

log = logging.getLogger("drs.evaluate")
KIND = "predictions"  # the kind of folder `drs evaluate` publishes (drs.util.files.MARKER)
SUBMISSION_KIND = "VOC test-server submission"  # the folder beside the submission archive
SUBMISSION_DIR = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"  # the VOC server's layout


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
    is replaced only if this command wrote it (drs.util.files.check_replaceable_dir); none inside ``dataset``.

    ``settings`` (the config's ``evaluation`` section; default: the schema's): ``protocol`` is
    ``full`` (whole images at ``scales``, with ``flip``) or ``reference`` (the authors' crop of
    ``crop_size``: :func:`reference_crop`, one scale, no flip). ``crf`` also scores the dense-CRF
    labels (:mod:`drs.evaluation.crf`, on ``crf_workers`` processes) under ``result["crf"]``. A split without
    masks (VOC test) is not scored: its predictions (after the CRF with ``crf``) go to the test
    server's layout under ``submission`` (a ``.tar.gz`` path; the folder beside it, without the
    suffix, holds ``results/VOC2012/Segmentation/comp6_test_cls/<id>.png``).
    """
    s = settings or EvaluationSettings()
    scales, flip, protocol, crop_size, crf = s.scales, s.flip, s.protocol, s.crop_size, s.crf
    if protocol not in EVALUATION_PROTOCOLS:
        raise UserError(f"evaluation protocol {protocol!r}: expected one of {list(EVALUATION_PROTOCOLS)}")
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
    network = predictor.record.get("model_config", {})
    # the reference protocol is the authors' for the network: DeepLabV3+'s --crop_val centre crop;
    # DeepLab-V2's main.py test, whole images (the multi-scale maximum is inside the network)
    cropped = protocol == "reference" and network.get("architecture", "deeplabv3plus") == "deeplabv3plus"
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
                if cropped:
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
        network=network_description(network),
        protocol=segmentation_protocol(
            split,
            len(voc),
            protocol,
            crop_size if cropped else None,
            used_scales,
            flip,
            crf,
            predictor.record,
            not scored,
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
