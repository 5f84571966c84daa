"""Train the CAM network (no DRS) on a `drs corpus` folder, fold its batch norm into the convolutions
and write the backbone (with --extra also the extra layers) as a weights file for the classifier's
`pretrained:` key. Resumes from OUT.work/last.pt."""

from __future__ import annotations

from drs.config.settings import ClassifierSettings
from drs.training.pretrain import pretrain_backbone
from drs.util.files import json_object


def add_arguments(p) -> None:
    p.add_argument("--corpus", required=True, help="corpus folder (drs corpus)")
    p.add_argument("--out", required=True, help="weights file to write")
    p.add_argument("--settings", default="{}", help="training settings as JSON (the `classifier:` keys; batch norm on)")
    p.add_argument("--extra", action="store_true", help="also keep the three extra convolutions")


def run(args) -> int:
    settings = ClassifierSettings.from_dict(json_object(args.settings, "--settings"))
    print(pretrain_backbone(args.corpus, args.out, settings, extra=args.extra))
    return 0
