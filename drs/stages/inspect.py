"""Summarise a localization-map store (HDF5): contents, image sizes, size against dense arrays, and
what made it. With --id and --out, draw that image's maps over the image, next to its ground truth,
as a PNG."""

from __future__ import annotations

import json

from drs.errors import UserError
from drs.report.figures import store_overlay
from drs.store.inspect import format_summary, summary
from drs.store.reader import MapStore
from drs.util.files import atomic_save_image


def add_arguments(p) -> None:
    p.add_argument("store", help="map store (.h5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--id", dest="image_id", help="image id to draw (needs --out)")
    p.add_argument("--out", help="PNG to write the overlay to (needs --id)")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")


def run(args) -> int:
    if (args.image_id is None) != (args.out is None):
        raise UserError("--id and --out go together: --id ID --out PNG draws that image's maps")
    with MapStore(args.store) as store:
        if args.image_id is not None:
            print(atomic_save_image(args.out, store_overlay(store, args.image_id, args.dataset)))
            return 0
        info = summary(store)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0
