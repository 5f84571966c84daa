"""The results of a run as tables, a chart, pictures and a markdown summary.

Inputs are the metrics files of the stages (``--metrics EXP:STAGE=PATH``, STAGE one of cam, refined,
segmentation), plus, for the pictures, map stores, a pseudo-label folder and a segmenter checkpoint;
the workflow passes them all as one ``--plan JSON`` (drs.config.plan.report_plan). It writes into
``--out-dir``:

- ``comparison.html``: one row per metrics file, grouped by stage: pseudo labels from the
  classifier's maps (CAM, DRS), from the refined maps, then DeepLabV3+ trained on pseudo labels and
  fully supervised, with the split, the number of images, mIoU, pixel accuracy and, for DeepLabV3+
  trained on pseudo labels, its mIoU as a fraction of the fully supervised model's (weak / full);
- ``per_class_iou.png``: grouped bars, one group per class, one bar per row of that table;
- ``experiment_<exp>.html``: per experiment, the per-class IoU of each stage it has;
- ``strips.png`` (with ``--dataset``): for a few training images, image | ground truth | each map
  store as a heat overlay | pseudo label | the segmenter's prediction, with each map's part /
  rest-of-object / background coverage under its column (from the metrics JSON that scored its store)
  and a colour legend;
- ``verdict.json``: the main experiment against the CAM baseline at every stage, each with its scoring;
- ``curves_<exp>_<stage>.png`` (with ``--history``): each training stage's history.csv, the checkpoint
  used marked; ``threshold_curves.png`` (with ``--sweep``): pseudo-label mIoU over alpha and the
  saliency threshold;

and the markdown ``--summary`` with the headline, the same tables and the paths of these files.
``drs report --headline SUMMARY`` prints a summary's headline (the Makefile does, after a run).
"""

from __future__ import annotations

import json

from drs.errors import UserError
from drs.report.write import (
    PLAN_KEYS,
    check_published,
    headline_section,
    make_strips,
    parse_histories,
    parse_metrics,
    parse_plan,
    write_report,
)
from drs.util.argtypes import name_value_pairs


def add_arguments(p) -> None:
    p.add_argument(
        "--plan",
        metavar="JSON",
        help="everything the report covers as one JSON object (what the workflow passes, from "
        "drs.config.plan.report_plan): metrics, labels, main, baseline, maps, pseudo_labels, segmenter, dataset, "
        "split; replaces the options from --metrics to --split",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="EXP:STAGE=PATH",
        help="a metrics JSON file (STAGE: cam, refined, segmentation)",
    )
    p.add_argument(
        "--label",
        nargs="*",
        default=[],
        metavar="EXP=TEXT",
        help="an experiment's method name in the tables (e.g. drs=DRS)",
    )
    p.add_argument(
        "--main", help="the experiment the headline is about (default: the first weakly supervised one given)"
    )
    p.add_argument("--baseline", help="the CAM baseline experiment the headline compares with")
    p.add_argument(
        "--strip-maps", nargs="*", default=[], metavar="TITLE=STORE", help="a map store drawn as a column of the strips"
    )
    p.add_argument("--pseudo-labels", metavar="DIR", help="pseudo-label folder drawn as a column of the strips")
    p.add_argument(
        "--segmenter", metavar="CKPT", help="DeepLabV3+ checkpoint whose predictions are a column of the strips"
    )
    p.add_argument(
        "--dataset", metavar="ROOT", help="dataset folder of the strip images (strips are drawn only with it)"
    )
    p.add_argument("--split", help="split of the strip images (default: train)")
    p.add_argument("--num-strip-images", type=int, default=6, help="images in the strips (default: 6)")
    p.add_argument("--strip-ids", nargs="*", default=[], help="draw these image ids instead of the automatic choice")
    p.add_argument("--panel-size", type=int, default=160, help="pixels per strip panel (default: 160)")
    p.add_argument(
        "--published",
        metavar="JSON",
        help="figures of others set beside ours in the reproduction table: a JSON list of objects with label, "
        "split, miou, source and protocol (the config's report.published)",
    )
    p.add_argument(
        "--history",
        nargs="*",
        default=[],
        metavar="EXP:STAGE=CSV",
        help="a training history (OUT/history.csv; STAGE: classifier, refiner or segmenter) drawn as a curve; "
        "a file that does not exist (an imported model) is skipped",
    )
    p.add_argument(
        "--sweep",
        nargs="*",
        default=[],
        metavar="METHOD=JSON",
        help="a drs sweep-labels result drawn as threshold curves (all on the same axes)",
    )
    p.add_argument("--out-dir", help="folder for the report files")
    p.add_argument("--summary", help="markdown summary to write")
    p.add_argument("--title", default="DRS results", help="title of the summary and the tables")
    p.add_argument(
        "--headline", metavar="SUMMARY", help="only print the headline of a summary written before, and exit"
    )


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--published: not valid JSON ({err.msg})") from None


def _options_plan(args) -> dict:
    """The plan the individual options give."""
    return {
        "metrics": parse_metrics(args.metrics),
        "labels": dict(name_value_pairs(args.label, "--label")),
        "main": args.main,
        "baseline": args.baseline,
        "maps": dict(name_value_pairs(args.strip_maps, "--strip-maps")),
        "pseudo_labels": args.pseudo_labels,
        "segmenter": args.segmenter,
        "dataset": args.dataset,
        "split": args.split or "train",
        "published": check_published(_json(args.published) if args.published else [], "--published"),
        "histories": parse_histories(args.history),
        "sweeps": dict(name_value_pairs(args.sweep, "--sweep")),
    }


def run(args) -> int:
    if args.headline:
        print(headline_section(args.headline))
        return 0
    if not args.out_dir:
        raise UserError("--out-dir is required (or --headline SUMMARY to print a summary's headline)")
    if args.plan:
        values = (
            args.metrics,
            args.label,
            args.main,
            args.baseline,
            args.strip_maps,
            args.pseudo_labels,
            args.segmenter,
            args.dataset,
            args.split,
            args.published,
            args.history,
            args.sweep,
        )
        given = [option for option, value in zip(PLAN_KEYS.values(), values, strict=True) if value]
        if given:
            raise UserError(f"--plan replaces {', '.join(given)}: give one or the other")
        plan = parse_plan(args.plan)
    else:
        plan = _options_plan(args)
    strips = make_strips(
        plan["dataset"],
        plan["split"],
        plan["maps"],
        plan["pseudo_labels"],
        plan["segmenter"],
        args.strip_ids,
        args.num_strip_images,
        args.panel_size,
        plan["metrics"].values(),
    )
    written = write_report(
        plan["metrics"],
        args.out_dir,
        args.summary,
        labels=plan["labels"],
        main=plan["main"],
        baseline=plan["baseline"],
        strips=strips,
        title=args.title,
        published=plan["published"],
        histories=plan["histories"],
        sweeps=plan["sweeps"],
    )
    for path in written.values():
        print(f"wrote {path}")
    return 0
