"""How a segmenter figure was measured, in words, and the reproduction table beside the authors'.

``drs evaluate`` records a ``network`` and a ``protocol`` in ``segmentation.json`` (split, image
count, crop, scales, flip, CRF, checkpoint choice, scoring rule); :func:`protocol_lines` turns
those into the lines the report prints under its tables, and :func:`reproduction_cells` sets our
figures beside, for a PASCAL VOC run, the authors' own (their README's val figures, the paper's
test figure), each with the protocol it was measured under, and any published figures the config
names (``report.published``).
"""

from __future__ import annotations

from drs.data.voc import VOC_CLASSES
from drs.report.render import pct
from drs.report.tables import network_name

CRF_PROTOCOL = "dense CRF of 10 iterations, Gaussian sxy 1 weight 3, bilateral sxy 67 srgb 3 weight 4"

# The authors' figures (fractions), each with where it comes from and how it was measured.
AUTHORS_FIGURES = (
    {
        "label": "DeepLab-V2 (ResNet-101) on DRS pseudo labels, the authors'",
        "network": "DeepLab-V2",
        "split": "val",
        "num_images": 1449,
        "miou": 0.694,
        "miou_crf": 0.704,
        "pixel_accuracy": None,
        "source": "qjadud1994/DRS README",
        "protocol": "1,449 val images, whole images at their own size, the maximum over inputs at 1.0, 0.5 and "
        "0.75 (DeepLab-V2-PyTorch main.py test); checkpoint_final (the last of 20,000 iterations); "
        f"+CRF: main.py crf, {CRF_PROTOCOL}",
    },
    {
        "label": "DeepLabV3+ (ResNet-101) on DRS pseudo labels, the authors'",
        "network": "DeepLabV3+",
        "split": "val",
        "num_images": 1449,
        "miou": 0.704,
        "miou_crf": 0.710,
        "pixel_accuracy": None,
        "source": "qjadud1994/DRS README",
        "protocol": "1,449 val images; shorter side 513 and 513 x 513 centre crop (--crop_val), one scale, no flip; "
        "checkpoint the best on val (validated every 100 iterations: selected_on_val, optimistic); "
        f"+CRF: their eval.py, {CRF_PROTOCOL}",
    },
    {
        "label": "DeepLab-V2 (ResNet-101) on DRS pseudo labels, the paper's",
        "network": "DeepLab-V2",
        "split": "test",
        "num_images": 1456,
        "miou": 0.714,
        "miou_crf": None,
        "pixel_accuracy": None,
        "source": "DRS paper (AAAI 2021), PASCAL VOC 2012 test server; the README gives no DeepLabV3+ test figure",
        "protocol": "1,456 test images scored by the VOC evaluation server (their DeepLab-V2 inference)",
    },
)

REPRODUCTION_HEADER = [
    "figure",
    "network",
    "split",
    "images",
    "mIoU (%), either scoring (segmenters predict every pixel)",
    "mIoU + CRF (%), either scoring",
    "pixel accuracy (%), either scoring",
    "protocol",
]
REPRODUCTION_ALIGN = ["l", "l", "l", "r", "r", "r", "r", "l"]


def reproduction_cells(metrics: dict[tuple[str, str], dict], published=()) -> list[list[str]]:
    """The reproduction table's rows: each segmenter figure of ours with its protocol, then, for a
    PASCAL VOC run, the authors' (:data:`AUTHORS_FIGURES`), then the config's ``report.published``
    figures (e.g. the seed deck's); empty when there is no segmenter figure."""
    segmentation = {k: v for k, v in metrics.items() if k[1] == "segmentation"}
    if not segmentation:
        return []
    rows = []
    for (experiment, _), values in segmentation.items():
        crf = values.get("crf") if isinstance(values.get("crf"), dict) else {}
        rows.append(
            [
                f"ours: `{experiment}`",
                (values.get("network") or {}).get("name", "DeepLabV3+"),
                str(values.get("split")),
                str(values.get("num_images", "–")),
                pct(values.get("miou")),
                pct(crf.get("miou")),
                pct(values.get("pixel_accuracy")),
                describe(values) or "not recorded",
            ]
        )
    figures = [*(AUTHORS_FIGURES if any(is_voc(v) for v in segmentation.values()) else ()), *published]
    for fig in figures:
        rows.append(
            [
                f"{fig['label']} ({fig['source']})",
                fig.get("network", ""),
                fig["split"],
                str(fig.get("num_images") or "–"),
                pct(fig.get("miou")),
                pct(fig.get("miou_crf")),
                pct(fig.get("pixel_accuracy")),
                fig["protocol"],
            ]
        )
    return rows


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
    """Markdown bullet lines: each segmenter figure's protocol."""
    lines = []
    for (experiment, stage), values in metrics.items():
        text = describe(values) if stage == "segmentation" else None
        if text is not None:
            lines.append(f"- {network_name(values)} of `{experiment}`: {text}")
    return lines
