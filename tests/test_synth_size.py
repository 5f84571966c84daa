"""Non-square synthetic images (synthetic.width / height, for VOC-sized rehearsals), and the default
set unchanged by them: the same arrays, the same files, the same rule parameter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from drs.data.synth import generate, generate_image
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.errors import UserError
from helpers import REPO

# Digests of the default spec's output, made with the generator before width / height existed
# (commit 3a41268): five images' arrays, and the whole default set's files (300 + 60 images).
DEFAULT_ARRAYS = "3a5f6e858b2b1c40386d30268475e8b33e85a57af8e5d3239d7ee304983331f9"
DEFAULT_TREE = "3b037a581a59fc82d0332645de2fb706c2c8d7114c066654514a9d5bcf6924f0"
ITEMS = [(0, 0), (0, 1), (0, 7), (1, 0), (1, 5)]

VOC_SIZED = SynthSpec(
    num_train=3,
    num_val=1,
    image_size=500,
    width=500,
    height=375,
    num_classes=20,
    objects_per_image=(1, 3),
    object_size=(90, 220),
)


def arrays_digest(spec: SynthSpec) -> str:
    digest = hashlib.sha256()
    for split_index, index in ITEMS:
        sample = generate_image(spec, split_index, index)
        for key in ("image", "mask", "part", "saliency"):
            digest.update(key.encode())
            digest.update(str(sample[key].shape).encode())
            digest.update(sample[key].tobytes())
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(root)).encode())
            digest.update(hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()


def test_default_images_unchanged():
    assert arrays_digest(SynthSpec()) == DEFAULT_ARRAYS


def test_square_sides_given_explicitly_are_the_default_images():
    assert arrays_digest(SynthSpec(width=128, height=128)) == DEFAULT_ARRAYS


@pytest.mark.slow
def test_default_set_unchanged(tmp_path):
    """The whole default dataset (config.yaml's synthetic: section), file for file."""
    assert tree_digest(generate(tmp_path / "set", SynthSpec(), workers=2)) == DEFAULT_TREE


def test_record_of_a_square_set_has_no_sides(tmp_path):
    out = generate(tmp_path / "set", SynthSpec(num_train=1, num_val=1, image_size=64, object_size=(24, 40)), workers=1)
    spec = json.loads((out / "synthetic.json").read_text())["spec"]
    assert "width" not in spec and "height" not in spec


def test_default_config_section_unchanged():
    """width / height have no schema default: config.yaml's section (a rule parameter) stays as it was."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert "width" not in config["synthetic"] and "height" not in config["synthetic"]
    assert config["synthetic"]["image_size"] == 128


def test_voc_sized_images(tmp_path):
    out = generate(tmp_path / "set", VOC_SIZED, workers=1)
    spec = json.loads((out / "synthetic.json").read_text())["spec"]
    assert (spec["width"], spec["height"]) == (500, 375)
    ds = VOCDataset(out, "train")
    xs = []
    for image_id in ds.ids:
        image = np.asarray(ds.load_image(image_id))
        assert image.shape == (375, 500, 3)
        mask, part, sal = ds.load_mask(image_id), ds.load_part_mask(image_id), ds.load_saliency(image_id)
        assert mask.shape == part.shape == sal.shape[:2] == (375, 500)
        objects = (mask > 0) & (mask != 255)
        assert objects.any() and (part > 0).any()
        xs.append(np.nonzero(objects)[1])
    # objects are placed over the whole width, not only in the left 375 x 375 square
    assert np.concatenate(xs).max() > 375


def test_object_size_checked_against_the_shorter_side():
    with pytest.raises(UserError, match=r"synthetic.object_size.*shorter side \(375\)"):
        SynthSpec.from_dict({"image_size": 500, "width": 500, "height": 375, "object_size": [90, 400]})
    with pytest.raises(UserError, match=r"synthetic.height"):
        SynthSpec.from_dict({"height": 16})
