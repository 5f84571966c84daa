"""The localization-map store: one HDF5 file per experiment, split and stage.

Layout (``SCHEMA_VERSION`` 1)::

    /                   attrs: format = "drs-map-store", schema_version, class_names (JSON, background
                               first), scales (JSON), flip, stage, split, dataset, checkpoint_sha256,
                               dataset_fingerprint (JSON: drs.data.fingerprint of the images and masks
                               the maps came from; absent in older stores), config (JSON text),
                               package_version, created (ISO-8601 UTC), num_images,
                               score_scale (optional, default 1.0)
    /maps/<image id>    uint8 (K, H, W), 0..255 = score in [0, score_scale] x 255 / score_scale, one map
                        per class present;
                        chunks (1, H, W), gzip level 4 with shuffle (K = 0: plain, empty)
                        attrs: classes (int16, sorted class indices 1..C, length K), size ([H, W])
    /ids                the image ids in write order (written when the store is closed)

Only the classes present in an image are stored, so a store is a small fraction of the dense
C x H x W arrays. A store being written lives under a hidden name (``.<name>.partial``) in the same
folder and is renamed to its final name only when closed cleanly, so a store under its final name is
always complete. One writer at a time: a second run on the same store is told that another run is
writing it (``drs.util.files.output_lock``). A failed write (a full disk) stops the writer at once with one
error naming the store; the partial file is removed and the store under the final name is kept.

``drs inspect STORE`` prints a summary; ``drs inspect STORE --id ID --out overlay.png`` draws one
image's maps over the image, next to its ground truth.
"""

from __future__ import annotations

from pathlib import Path

from drs.errors import UserError

FORMAT = "drs-map-store"
SCHEMA_VERSION = 1
MAPS_GROUP = "maps"
IDS_DATASET = "ids"
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
#: per chunk, what HDF5's filter pipeline of ``COMPRESSION`` makes of a uint8 chunk: shuffle is the
#: identity on 1-byte elements, then deflate (zlib's ``compress2`` at the same level)
_ZLIB_LEVEL = COMPRESSION["compression_opts"]
_JSON_ATTRS = ("class_names", "scales", "config", "dataset_fingerprint")
LIBVER = ("v110", "v110")  # readable by HDF5 >= 1.10 (h5py >= 2.10)


class MapStoreError(UserError, ValueError):
    """Bad arguments to :meth:`MapStoreWriter.add` (a ``UserError`` and a ``ValueError``)."""


def partial_path(path: str | Path) -> Path:
    """The hidden name a store is written under until it is complete."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"
