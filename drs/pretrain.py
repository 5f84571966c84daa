"""`drs pretrain-backbone`: pretrain the classifier's network on the embedded corpus, fold its batch
norm, and write the result as a weights file for the classifier's ``pretrained:`` key.

The paper fine-tunes an ImageNet VGG-16 (no batch norm). On the synthetic set the project makes its
own: the CAM network (no DRS) is trained from scratch, with batch norm, on `drs corpus`'s outline x
texture classes (no part cue), then batch norm is folded into the convolutions
(:mod:`drs.models.fold`) so that fine-tuning runs without it, as on the real VGG-16. With ``--extra``
the three extra convolutions are kept too (otherwise they are new, as in the paper).
"""

from __future__ import annotations

from pathlib import Path

from drs.fileio import json_object


def pretrain_backbone(corpus: str | Path, out: str | Path, settings, extra: bool = False) -> Path:
    """Train on ``corpus`` (split train) into ``<out>.work/``, fold, write ``out``."""
    from drs.classifier import train_classifier
    from drs.models.fold import save_folded_backbone

    out = Path(out)
    work = out.with_name(out.name + ".work")
    model_pt = train_classifier(corpus, "train", work, settings, "none")
    return save_folded_backbone(model_pt, out, extra=extra)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "pretrain-backbone",
        help="pretrain the classifier's network on the embedded corpus and fold its batch norm",
        description="Train the CAM network (no DRS) on a `drs corpus` folder, fold its batch norm into the "
        "convolutions and write the backbone (with --extra also the extra layers) as a weights file for "
        "the classifier's `pretrained:` key. Resumes from OUT.work/last.pt.",
    )
    p.add_argument("--corpus", required=True, help="corpus folder (drs corpus)")
    p.add_argument("--out", required=True, help="weights file to write")
    p.add_argument("--settings", default="{}", help="training settings as JSON (the `classifier:` keys; batch norm on)")
    p.add_argument("--extra", action="store_true", help="also keep the three extra convolutions")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from drs.classifier import ClassifierSettings

    settings = ClassifierSettings.from_dict(json_object(args.settings, "--settings"))
    print(pretrain_backbone(args.corpus, args.out, settings, extra=args.extra))
    return 0
