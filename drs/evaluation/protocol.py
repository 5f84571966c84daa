"""How a figure was measured, as the ``protocol`` every metrics JSON carries.

* pseudo labels: ``ours`` (the labels as written, with the ignore steps; predicted 255 left out of
  the confusion matrix and counted) or ``reference`` (the reference's scoring: arg-max with no
  ignore step, every pixel counted), each with its split and image count (:func:`label_protocol`);
* a segmenter: split, image count, crop, scales, flip, CRF, checkpoint choice and scoring rule
  (:func:`segmentation_protocol`).
"""

from __future__ import annotations

from drs.evaluation.crf import REFERENCE as CRF_REFERENCE

OURS_RULE = (
    "pseudo labels with the conflict and salient-background ignore steps; predicted 255 left out of the "
    "confusion matrix and counted (ignored_fraction); ground-truth 255 left out"
)
REFERENCE_RULE = (
    "arg-max of (1 - binary saliency, object cues >= alpha) with no ignore step: every pixel counted, ground-truth "
    "255 left out (the reference's scripts/test_cls.py, test_refine.py)"
)


def label_protocol(name: str, split: str, num_images: int, saliency_threshold, **more) -> dict:
    rule = REFERENCE_RULE if name == "reference" else OURS_RULE
    return {
        "name": name,
        "split": split,
        "num_images": num_images,
        "scoring": rule,
        "saliency_threshold": saliency_threshold,
        **more,
    }


def network_description(model_config: dict) -> dict:
    """The segmenter a figure is of (segmentation.json's ``network``): its model config and a name,
    e.g. "DeepLab-V2 ResNet-101 (inputs at 1.0, 0.5, 0.75, their maximum)"."""
    architecture = model_config.get("architecture", "deeplabv3plus")
    backbone = str(model_config.get("backbone", "")).replace("resnet", "ResNet-")
    width = model_config.get("width", 1.0)
    narrow = f" at {width:g} width" if width != 1 else ""
    if architecture == "deeplabv2":
        scales = ", ".join(str(float(s)) for s in [1.0, *model_config.get("msc_scales", [])])
        name = f"DeepLab-V2 {backbone}{narrow} (inputs at {scales}, their maximum)"
    else:
        name = f"DeepLabV3+ {backbone}{narrow} (output stride {model_config.get('output_stride', 16)})"
    return {"architecture": architecture, "name": name, **model_config}


def segmentation_protocol(split, count, protocol, crop_size, scales, flip, crf, record, submission) -> dict:
    """What a figure was measured under (segmentation.json's ``protocol``); ``crop_size`` None: whole
    images (the ``full`` protocol, and DeepLab-V2's ``reference``, its main.py test)."""
    if crop_size is not None:
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
        "checkpoint": checkpoint_choice(record),
        "selected_on_val": bool(record.get("selected_on_val")),
        "scoring": None
        if submission
        else "confusion matrix over all pixels of the split, 255 in the ground truth left out",
    }


def checkpoint_choice(record: dict) -> str:
    if record.get("imported_from"):
        return "imported"
    if record.get("selected_on_val"):
        best = record["selected_on_val"]
        every = f"validations every {best['every']}"
        return f"best on {best['split']} (step {best['step']} of {every}, mIoU {best['miou']:.4f})"
    return "last"
