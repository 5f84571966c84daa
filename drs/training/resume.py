"""Whether an epoch checkpoint (``last.pt``) may be resumed: the same settings, data and model."""

from __future__ import annotations


def _first_difference(saved, wanted, where: str) -> str | None:
    """The first key path at which two nested values differ, with both values."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        keys = list(wanted) + [k for k in saved if k not in wanted]
        for key in sorted(keys, key=lambda k: not _is_data_key(k)):  # data first: the likelier cause
            if key not in saved or key not in wanted:
                side = "last.pt" if key not in wanted else "this run"
                return f"{where}.{key} only in {side}"
            found = _first_difference(saved[key], wanted[key], f"{where}.{key}")
            if found:
                return found
        return None
    if saved != wanted:
        return f"{where} was {_short(saved)} in last.pt, is {_short(wanted)} now"
    return None


def _is_data_key(key) -> bool:
    """Record keys that fingerprint the training data (images, labels, a map store's bytes)."""
    return "fingerprint" in str(key) or "sha256" in str(key)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def resume_mismatch(state: dict, extra_state: dict) -> str | None:
    """Why the checkpoint ``state`` cannot be resumed by a run with ``extra_state`` (None: it can):
    the training data changed (the ``data_fingerprint`` of a record differs), or another setting."""
    for key, wanted in extra_state.items():
        found = _first_difference(state.get(key), wanted, key)
        if found:
            path = found.split(" ")[0].split(".")
            if not any(map(_is_data_key, path)):
                what = "other settings"
            elif " only in " in found:
                what = "cannot tell whether the training data is the same"
            else:
                what = "the training data changed"
            return f"{what} ({found})"
    return None
