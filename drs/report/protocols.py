"""How a DeepLabV3+ figure was measured, in words, and the DRS authors' own figures with theirs.

``drs evaluate`` records a ``protocol`` in ``segmentation.json`` (split, image count, crop, scales,
flip, CRF, checkpoint choice, scoring rule); :func:`protocol_lines` turns those into the lines the
report prints under its tables, and adds, for a PASCAL VOC run, the authors' figures labelled as
theirs with the protocol they were measured under.
"""

from __future__ import annotations

from drs.data.voc import VOC_CLASSES
from drs.report.render import pct

# The authors' figures (fractions), each with where it comes from and how it was measured.
AUTHORS_FIGURES = (
    {
        "label": "DeepLabV3+ (ResNet-101) on DRS pseudo labels, the authors'",
        "split": "val",
        "miou": 0.704,
        "miou_crf": 0.710,
        "source": "qjadud1994/DRS README",
        "protocol": "1,449 val images; shorter side 513 and 513 x 513 centre crop (--crop_val), one scale, no flip; "
        "checkpoint the best on val (validated every 100 iterations: selected_on_val, optimistic); "
        "+CRF: their eval.py dense CRF (10 iterations, Gaussian sxy 1 compat 3, bilateral sxy 67 srgb 3 compat 4)",
    },
    {
        "label": "DeepLab-V2 (ResNet-101) on DRS pseudo labels, the paper's",
        "split": "test",
        "miou": 0.714,
        "miou_crf": None,
        "source": "DRS paper (AAAI 2021), PASCAL VOC 2012 test server; the README gives no DeepLabV3+ test figure",
        "protocol": "1,456 test images scored by the VOC evaluation server (their DeepLab-V2 inference)",
    },
)


def describe(metrics: dict) -> str | None:
    """One line for a segmentation.json's protocol (None for files written before it was recorded)."""
    p = metrics.get("protocol")
    if not isinstance(p, dict) or "crop" not in p:
        return None
    parts = [
        f"protocol {p.get('name', '?')}",
        f"{p.get('split')} ({p.get('num_images')} images)",
        f"crop: {p.get('crop')}",
        f"scales {p.get('scales')}",
        "flip" if p.get("flip") else "no flip",
    ]
    crf = metrics.get("crf")
    if p.get("crf") and isinstance(crf, dict):
        parts.append(f"dense CRF: {pct(crf.get('miou'))}% mIoU with it, {pct(metrics.get('miou'))}% without")
    else:
        parts.append("no CRF")
    checkpoint = f"checkpoint {p.get('checkpoint')}"
    if p.get("selected_on_val"):
        checkpoint += " (selected_on_val: optimistic)"
    parts.append(checkpoint)
    return "; ".join(parts)


def is_voc(metrics: dict) -> bool:
    return list(metrics.get("class_names") or metrics.get("per_class_iou", {})) == list(VOC_CLASSES)


def protocol_lines(metrics: dict[tuple[str, str], dict]) -> list[str]:
    """Markdown bullet lines: each DeepLabV3+ figure's protocol, then (VOC runs) the authors' figures."""
    lines = []
    segmentation = {k: v for k, v in metrics.items() if k[1] == "segmentation"}
    for (experiment, _), values in segmentation.items():
        text = describe(values)
        if text is not None:
            lines.append(f"- DeepLabV3+ of `{experiment}`: {text}")
    if any(is_voc(v) for v in segmentation.values()):
        for fig in AUTHORS_FIGURES:
            crf = f", {pct(fig['miou_crf'])}% with CRF" if fig["miou_crf"] is not None else ""
            lines.append(
                f"- {fig['label']} ({fig['source']}): {pct(fig['miou'])}% mIoU on {fig['split']}{crf}; "
                f"their protocol: {fig['protocol']}"
            )
    return lines
