"""drs-wsss: Discriminative Region Suppression for weakly-supervised semantic segmentation.

The public API, for scripts and notebooks (the layout under it may move without breaking them):

- ``drs.open_store(path)``: any map store the workflow writes (``results/<exp>/maps/*.h5``): its
  ``class_names``, ``ids``, one image's maps (``read(id)``, ``dense(id)``) and ``provenance``;
- ``drs.load_model(path)``: any ``model.pt`` the workflow or ``drs import-weights`` writes, as
  ``(module, settings, record)``: the network in eval mode on the CPU, its training settings, the
  rest of its record;
- ``drs.pseudo_label(classes, maps, saliency, settings=None, **overrides)``: the pseudo-label rule on
  arrays, with ``drs.PseudoLabelSettings`` (the config's ``pseudo_labels`` section) and
  ``drs.reference_label``, the label the reference's scoring reads.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: name -> the module defining it; imported on first use, so that ``import drs`` stays light (the
#: Snakefile imports drs.config at the start of every job)
_API = {
    "open_store": "drs.store.reader",
    "MapStore": "drs.store.reader",
    "load_model": "drs.store.model_files",
    "pseudo_label": "drs.labels.rule",
    "reference_label": "drs.labels.rule",
    "PseudoLabelSettings": "drs.config.settings",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'drs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
