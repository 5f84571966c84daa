"""The one place that writes and reads model files: ``model.pt``, ``best.pt`` and ``last.pt``.

A training rule's output folder holds ``model.pt`` (:func:`save_model`: the state dict plus a record
of what made it: ``kind``, ``model_config``, ``settings``, ``class_names``, the data's fingerprint),
``last.pt`` (the epoch checkpoint a killed run resumes from: :func:`read_epoch_checkpoint`) and, with
validation, ``best.pt``. Every file is written atomically (a reader never sees a partial file) and,
under torchrun, by rank 0 alone; every read is ``torch.load(..., weights_only=True)``.
:func:`load_model` (also ``drs.load_model``) opens any ``model.pt`` the workflow or ``drs
import-weights`` writes and rebuilds its network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from drs.errors import UserError
from drs.models.deeplab import DeepLabV3Plus
from drs.models.deeplabv2 import DeepLabV2MSC
from drs.models.vgg import DRSClassifier
from drs.runtime import distributed
from drs.util.files import RecordingWriter, atomic_file, write_error

log = logging.getLogger("drs.train")

MODEL_FILE = "model.pt"  # the trained model in a training rule's output folder
LAST_CHECKPOINT = "last.pt"  # the epoch checkpoint a killed run resumes from
BEST_FILE = "best.pt"  # the model best on the validation split (segmenter.val_every)

#: the network class that rebuilds a model file of each kind (``model_class.from_config``)
MODEL_CLASSES = {"classifier": DRSClassifier, "refiner": DRSClassifier, "segmenter": DeepLabV3Plus}
#: a segmenter's network by its model config's ``architecture`` (absent: DeepLabV3+, the first one)
SEGMENTERS = {"deeplabv3plus": DeepLabV3Plus, "deeplabv2": DeepLabV2MSC}


def network_class(kind: str, model_config: dict):
    """The network class of a model file of ``kind`` with ``model_config``."""
    if kind == "segmenter":
        architecture = model_config.get("architecture", "deeplabv3plus")
        if architecture not in SEGMENTERS:
            raise UserError(f"model config architecture {architecture!r}: expected one of {sorted(SEGMENTERS)}")
        return SEGMENTERS[architecture]
    return MODEL_CLASSES[kind]


def atomic_save(obj, path: Path) -> None:
    """torch.save to a hidden temporary file, then rename: a reader never sees a partial file.

    A failed write (a full disk) removes the temporary file, keeps what ``path`` held and raises
    one UserError naming ``path`` (drs.util.files.atomic_file). Under torchrun only rank 0 writes (every
    process holds the same model and state)."""
    if not distributed.is_main():
        return
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as file:
        writer = RecordingWriter(file)  # torch turns a failed write into "enforce fail": keep the OSError
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise write_error(path, writer.error) from None


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model(model: nn.Module, record: dict, out_dir: Path) -> Path:
    """``OUT/model.pt``: the state dict and ``record`` (kind, model config, settings), written atomically
    by rank 0 while every process waits for it. Returns its path."""
    final = Path(out_dir) / MODEL_FILE
    atomic_save({"state_dict": model.state_dict(), **record}, final)
    distributed.barrier()
    log.info("wrote %s", final)
    return final


def read_model_file(path: str | Path, kinds: tuple[str, ...]) -> dict:
    """The checkpoint dict of a ``model.pt`` that ``drs train-<kind>`` wrote, for one of ``kinds``
    (UserError naming the file when it is missing, unreadable or of another kind)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = load_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") not in kinds:
        raise UserError(f"{path}: not a checkpoint of drs train-{' or train-'.join(kinds)}")
    return checkpoint


def load_model_file(path: str | Path, kinds: tuple[str, ...], model_class=None) -> tuple[nn.Module, dict]:
    """(model in eval mode on the CPU, the checkpoint's record without its state dict) from a
    ``model.pt`` of one of ``kinds``; ``model_class.from_config`` (default: :func:`model_class` of the
    file's kind and model config) rebuilds the network."""
    checkpoint = read_model_file(path, kinds)
    for key, kind in (("model_config", dict), ("state_dict", dict), ("class_names", list)):
        if not isinstance(checkpoint.get(key), kind):
            raise UserError(
                f"{path}: checkpoint has no {key!r} ({'a mapping' if kind is dict else 'a list'}); "
                f"not a model.pt of drs train-{checkpoint['kind']}"
            )
    cls = model_class or network_class(checkpoint["kind"], checkpoint["model_config"])
    try:
        model = cls.from_config(checkpoint["model_config"])
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: model config {checkpoint['model_config']} does not build a network ({err})") from None
    _check_state_dict(path, model, checkpoint["state_dict"])
    model.load_state_dict(checkpoint.pop("state_dict"))
    model.eval()
    return model, checkpoint


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns."""

    module: nn.Module  #: the network, in eval mode, on the CPU
    settings: dict  #: the training settings it was made with (its config section; {} for an imported one)
    record: dict  #: the rest of the record: kind, model_config, class_names, data fingerprint, ...


def load_model(path: str | Path) -> LoadedModel:
    """Any ``model.pt`` the workflow or ``drs import-weights`` writes (a classifier, refiner or
    segmenter), its network rebuilt in eval mode on the CPU, with its settings and record."""
    module, record = load_model_file(path, tuple(MODEL_CLASSES))
    return LoadedModel(module, dict(record.get("settings") or {}), record)


class StateDictMismatch(UserError):
    """A model file's state dict does not fit the network its record describes."""


def _check_state_dict(path, model: nn.Module, state: dict) -> None:
    """UserError naming the checkpoint and its first key that the network lacks, misses or holds in
    another shape (e.g. a checkpoint of another width or number of classes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise StateDictMismatch(
            f"{path}: state dict is missing {len(missing)} key(s) of the network, first {missing[0]!r}"
        )
    if unexpected:
        raise StateDictMismatch(f"{path}: state dict has {len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    for key, value in expected.items():
        shape = tuple(getattr(state[key], "shape", ()))
        if not isinstance(state[key], torch.Tensor) or shape != tuple(value.shape):
            raise StateDictMismatch(
                f"{path}: state dict key {key!r} has shape {shape} but the network of its model config needs "
                f"{tuple(value.shape)} (a checkpoint of another width or number of classes?)"
            )


_EPOCH_KEYS = ("model", "optimizer", "scaler", "epoch")


def read_epoch_checkpoint(path: Path, name: str = "train") -> dict | None:
    """The epoch checkpoint ``path`` (``last.pt``), or None when there is none. One that cannot be
    read (empty, truncated, not an epoch checkpoint) is moved aside to ``<name>.unreadable`` (by
    rank 0) and logged, so that the run starts afresh instead of failing at every rerun."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
        if not isinstance(state, dict) or not all(k in state for k in _EPOCH_KEYS):
            raise ValueError(f"not an epoch checkpoint of drs (no {', '.join(_EPOCH_KEYS)})")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        aside = path.with_name(path.name + ".unreadable")
        if distributed.is_main():
            try:
                os.replace(path, aside)
            except FileNotFoundError:
                pass
        log.warning("%s: %s is unreadable (%s); moved it to %s and starting afresh", name, path, err, aside)
        return None
    return state


def load_classifier(path: str | Path, kinds: tuple[str, ...] = ("classifier",)):
    """(model in eval mode on the CPU, the checkpoint's record without its state dict) from a `model.pt`.

    ``kinds`` lists the accepted checkpoint kinds: "classifier" (train-classifier), "refiner"
    (train-refiner; the same network class without DRS modules).
    """
    return load_model_file(path, kinds, DRSClassifier)


def load_segmenter(path: str | Path):
    """(the segmenter, DeepLabV3+ or DeepLab-V2 by its model config, in eval mode on the CPU; the
    checkpoint's record without its state dict)."""
    try:
        return load_model_file(path, ("segmenter",))
    except StateDictMismatch as err:  # keys or shapes of another network
        raise UserError(
            f"{err}; its weights do not fit this DeepLabV3+: a model.pt from before the reference's layout "
            "(aspp.*, decoder.*) must be retrained"
        ) from None
