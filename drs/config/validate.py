"""A config against a JSON schema: every violation as one line that names the key."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from drs.errors import UserError


def _describe(error: jsonschema.ValidationError) -> list[str]:
    path = [str(p) for p in error.absolute_path]
    key = ".".join(path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        prefix = f"{key}." if key else ""
        return [
            f"config key '{prefix}{extra}': unknown key; expected one of {allowed}"
            for extra in error.instance
            if extra not in allowed
        ]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        prefix = f"{key}." if key else ""
        return [f"config key '{prefix}{missing}': required but missing"]
    expected = error.schema.get("description")
    hint = f" (expected: {expected})" if expected else ""
    return [f"config key '{key or '(top level)'}': {error.message}{hint}"]


def check_schema(config: dict, schema_path: str | Path) -> None:
    """Raise UserError listing every schema violation, one line each, naming the key."""
    check_against(config, yaml.safe_load(Path(schema_path).read_text()))


def check_against(instance: object, schema: dict) -> None:
    """Raise UserError listing every violation of ``schema`` (a JSON schema as a dict) by
    ``instance``, one line each, naming the key (its path from the instance's top)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [line for error in errors for line in _describe(error)]
    if lines:
        raise UserError("\n".join(lines))
