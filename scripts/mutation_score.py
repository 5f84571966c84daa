"""Mutation score of a mutmut run (scripts/mutation-test.sh), per function and in total.

Reads mutmut's result files (mutants/**/*.py.meta). A mutant is killed when a test failed (or
timed out or crashed) with it; survived when every test passed; "no tests" when no configured test reaches
its function (it counts as surviving). Arguments: fnmatch patterns of mutant names (default: all).
"""

from __future__ import annotations

import collections
import fnmatch
import json
import sys
from pathlib import Path

from mutmut.stats import status_by_exit_code  # mutmut's own reading of a mutant's exit code


def main(patterns: list[str]) -> int:
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if patterns and not any(fnmatch.fnmatch(key, p) for p in patterns):
                continue
            rows[key.rsplit("__mutmut_", 1)[0]][status_by_exit_code[code]] += 1
    total: collections.Counter = collections.Counter()
    for function in sorted(rows):
        total.update(rows[function])
        print(f"{function:60s} " + " ".join(f"{k}={v}" for k, v in sorted(rows[function].items())))
    killed = total["killed"] + total["timeout"] + total["segfault"]
    counted = sum(v for k, v in total.items() if k not in ("not checked", "skipped", "check was interrupted by user"))
    print(f"total: {dict(sorted(total.items()))}")
    print(f"mutation score: {killed}/{counted} = {killed / max(1, counted):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
