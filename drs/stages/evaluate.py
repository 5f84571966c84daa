"""Predictions as palette PNGs and a metrics JSON with mIoU, per-class IoU, pixel accuracy and the
confusion matrix (ground-truth pixels labelled 255 are left out), under the protocol the config's
`evaluation:` section (--settings) names; a split without masks (VOC test) is predicted for the
evaluation server instead (--submission)."""

from __future__ import annotations

import argparse
import json
import logging

from drs.config.arguments import add_settings_argument, settings_from_args
from drs.config.settings import EVALUATION_PROTOCOLS, EvaluationSettings
from drs.evaluation.evaluate import evaluate
from drs.util.argtypes import positive_float, positive_int
from drs.util.files import atomic_write_text, check_outside_dataset

log = logging.getLogger("drs.evaluate")


def add_arguments(p) -> None:
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
        choices=EVALUATION_PROTOCOLS,
        **hand,
        help="override evaluation.protocol: full, whole images at the scales; reference, the authors' centre "
        "crop of the image resized to shorter side crop_size, one scale, no flip",
    )
    p.add_argument(
        "--crop-size", type=int, help="override evaluation.crop_size: crop of the reference protocol", **hand
    )
    p.add_argument("--crf", action="store_true", help="override evaluation.crf: also score dense-CRF labels", **hand)
    p.add_argument("--crf-workers", type=positive_int, help="processes for the CRF (default: every usable core)")
    p.add_argument(
        "--submission", help="for a split without masks (VOC test): the .tar.gz to write for the evaluation server"
    )
    p.add_argument("--experiment", help="experiment name recorded in the metrics")


def run(args) -> int:
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
