# The inputs and --settings of train_segmenter (workflow/rules/segmentation.smk), per experiment:
# DeepLabV3+ (config section segmenter) or DeepLab-V2 (section deeplabv2).


def segmenter_labels(wildcards):
    """The label folder the segmenter learns from (none for the fully supervised reference; the
    experiment's pseudo_labels_dir when it names one)."""
    if plan.fully_supervised(config, wildcards.exp):
        return []
    return plan.given_labels(config, wildcards.exp) or res(
        paths.PSEUDO_LABELS, exp=wildcards.exp
    )


def segmenter_settings(wildcards):
    """The trainer's --settings: the experiment's segmenter section (segmenter, or deeplabv2 for
    DeepLab-V2) with its seed, and DeepLab-V2's COCO start as the file downloaded for it.
    """
    section = plan.segmenter_section(config, wildcards.exp)
    values = json.loads(experiment_settings(section)(wildcards))
    if section == "deeplabv2" and values["pretrained"] == "coco":
        values["pretrained"] = res(paths.WEIGHTS, name="deeplabv1_coco")
    return json.dumps(values, sort_keys=True)


def segmenter_weights(wildcards):
    """The downloaded initial weights an experiment's segmenter starts from (DeepLab-V2's COCO file)."""
    section = plan.segmenter_section(config, wildcards.exp)
    if section == "deeplabv2" and config["deeplabv2"]["pretrained"] == "coco":
        return [res(paths.WEIGHTS, name="deeplabv1_coco")]
    return []
