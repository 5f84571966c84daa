"""Check a workflow config file as the workflow does when it starts (YAML syntax, schema, cross-key
rules), and name the file and line of a YAML syntax error (Snakemake's --configfile reports neither)."""

from __future__ import annotations

from drs.config.workflow import check_config_file


def add_arguments(p) -> None:
    p.add_argument("config", help="config file (YAML), e.g. config/voc2012.yaml")


def run(args) -> int:
    check_config_file(args.config)
    print(f"{args.config}: OK")
    return 0
