"""Settings: every default is the schema's, every stage takes its section as --settings (errors name
the key), per-key flags only override it, and the data loader follows the device."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import yaml

from drs.cli import parse_args
from drs.config.arguments import settings_from_args
from drs.config.schema import section
from drs.config.settings import (
    ClassifierSettings,
    EvaluationSettings,
    MapsSettings,
    PseudoLabelSettings,
    RefinerSettings,
    SegmenterSettings,
)
from drs.errors import UserError
from helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
SECTIONS = [
    ClassifierSettings,
    RefinerSettings,
    SegmenterSettings,
    MapsSettings,
    PseudoLabelSettings,
    EvaluationSettings,
]


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.section)
def test_defaults_are_the_schemas(cls):
    properties = SCHEMA["properties"][cls.section]["properties"]
    assert asdict(cls()) == {key: spec["default"] for key, spec in properties.items()}


def test_a_field_without_a_schema_default_fails_at_import():
    with pytest.raises(TypeError, match="not_in_schema"):

        @section("maps")
        class Broken(MapsSettings):
            not_in_schema: int


def test_schema_enums_are_checked_naming_the_key():
    with pytest.raises(UserError, match="config key 'pseudo_labels.headline_protocol': must be one of"):
        PseudoLabelSettings.from_dict({"headline_protocol": "theirs"})
    with pytest.raises(UserError, match="config key 'segmenter.backbone'"):
        SegmenterSettings.from_dict({"backbone": "vgg"})


@pytest.mark.parametrize(
    ("argv", "cls", "expected"),
    [
        (["extract-maps", "--model", "m", "--dataset", "d", "--out", "o"], MapsSettings, {}),
        (
            [
                "extract-maps",
                "--model",
                "m",
                "--dataset",
                "d",
                "--out",
                "o",
                "--settings",
                '{"scales": [64], "batch_size": 2}',
                "--flip",
            ],
            MapsSettings,
            {"scales": [64], "batch_size": 2, "flip": True},
        ),
        (
            [
                "pseudo-labels",
                "s.h5",
                "--out",
                "o",
                "--settings",
                '{"alpha": 0.3, "saliency_threshold": null}',
                "--alpha",
                "0.25",
            ],
            PseudoLabelSettings,
            {"alpha": 0.25, "saliency_threshold": None},
        ),
        (
            ["score-labels", "l", "--dataset", "d", "--split", "train", "--saliency-threshold", "continuous"],
            PseudoLabelSettings,
            {"saliency_threshold": None},
        ),
        (
            ["eval-maps", "s.h5", "--settings", '{"headline_protocol": "reference"}'],
            PseudoLabelSettings,
            {"headline_protocol": "reference"},
        ),
        (
            [
                "evaluate",
                "--model",
                "m",
                "--dataset",
                "d",
                "--predictions",
                "p",
                "--out",
                "o",
                "--settings",
                '{"scales": [1, 1.5]}',
                "--protocol",
                "full",
            ],
            EvaluationSettings,
            {"scales": [1.0, 1.5], "protocol": "full"},
        ),
        (
            [
                "train-refiner",
                "--dataset",
                "d",
                "--store",
                "s",
                "--out",
                "o",
                "--settings",
                '{"epochs": 3}',
                "--seed",
                "4",
            ],
            RefinerSettings,
            {"epochs": 3, "seed": 4},
        ),
        (
            ["train-segmenter", "--dataset", "d", "--labels", "l", "--out", "o", "--seed", "2"],
            SegmenterSettings,
            {"seed": 2},
        ),
    ],
)
def test_stages_take_their_section_and_flags_override_it(argv, cls, expected):
    settings = settings_from_args(cls, parse_args(argv))
    assert asdict(settings) == {**asdict(cls()), **expected}


def test_unknown_key_in_settings_is_named(capsys):
    from drs.cli import main

    assert main(["pseudo-labels", "s.h5", "--out", "o", "--settings", '{"alpah": 0.3}']) == 2
    assert "config key 'pseudo_labels': unknown key(s) ['alpah']" in capsys.readouterr().err


def test_md5_rule_is_one_rule():
    """The workflow's schema and `drs download --archives` take the same MD5s: either case, 32 hex digits."""
    from drs.config.validate import check_schema
    from drs.data.download import validate_archives

    def archives(md5):
        return {"a": {"url": "http://127.0.0.1/a.tar", "md5": md5, "extract": {"a": "b"}}}

    def config(md5):
        return {
            "dataset": "voc2012",
            "voc2012": {"archives": archives(md5)},
            "experiments": {"drs": {"drs": "learnable"}},
            "main_experiment": "drs",
        }

    for good in ("AB" * 16, "ab" * 16, None):
        check_schema(config(good), REPO / "workflow/schemas/config.schema.yaml")
        validate_archives(archives(good))
    for bad in ("ab" * 15 + "a", "zz" * 16):
        with pytest.raises(UserError):
            check_schema(config(bad), REPO / "workflow/schemas/config.schema.yaml")
        with pytest.raises(UserError, match="md5"):
            validate_archives(archives(bad))


def test_data_loader_follows_the_device(monkeypatch):
    from drs.training.scaffold import data_loader

    data = torch.utils.data.TensorDataset(torch.zeros(10, 1))
    settings = ClassifierSettings(batch_size=4)
    cpu = data_loader(data, settings)
    assert (cpu.num_workers, cpu.pin_memory, cpu.drop_last, cpu.batch_size) == (0, False, True, 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda = data_loader(data, settings)
    assert (cuda.num_workers, cuda.pin_memory, cuda.persistent_workers) == (torch.get_num_threads(), True, False)
    assert data_loader(data, ClassifierSettings(num_workers=1)).num_workers == 1
