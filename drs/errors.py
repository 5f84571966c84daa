"""Errors the `drs` command reports without a traceback."""

import re


class UserError(Exception):
    """Bad input (a file, a key, an argument). The message names what is at fault."""


def user_message(err: UserError) -> str:
    """The message of ``err``; for one that a DataLoader worker raised (PyTorch re-raises it in the
    main process with the worker's traceback as its message), the original message alone."""
    text = str(err)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        last = text.rstrip().rsplit("\n", 1)[-1]
        return re.sub(r"^[\w.]+: ", "", last, count=1)
    return text
