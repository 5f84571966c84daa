"""Errors the `drs` command reports without a traceback."""


class UserError(Exception):
    """Bad input (a file, a key, an argument). The message names what is at fault."""
