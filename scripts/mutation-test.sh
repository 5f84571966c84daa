#!/usr/bin/env bash
# Mutation testing of the core functions (docs/testing.md): mutmut (pinned in pyproject.toml's
# `test` extra, configured under [tool.mutmut]) mutates the functions below one small change at a
# time and runs, for each mutant, the fast tests of [tool.mutmut] that reach that function; a
# mutant no test fails "survived". Arguments replace the default function patterns, e.g.
#   scripts/mutation-test.sh 'drs.metrics.*'
# Results stay in mutants/ (git-ignored): `mutmut results`, `mutmut show NAME` for a survivor's diff.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VIRTUAL_ENV:-$PWD/.venv}/bin"
[ -x "$BIN/mutmut" ] || BIN="$(dirname "$(command -v mutmut)")"
CORE=(
    'drs.pseudo_labels.x_pseudo_label__mutmut_*'       # the pseudo-label rule
    'drs.metrics.*'                                    # metrics
    'drs.models.drs.xǁDRSǁcontroller__mutmut_*'        # the DRS module
    'drs.models.drs.xǁDRSǁforward__mutmut_*'
    'drs.extract.x_combine__mutmut_*'                  # map building
    'drs.extract.x_forward_scales__mutmut_*'
    'drs.maps.xǁMapStoreǁread__mutmut_*'               # the store: reading maps back
    'drs.maps.xǁMapStoreǁdense__mutmut_*'
    'drs.maps.xǁMapStoreǁheader__mutmut_*'
    'drs.maps.xǁMapRecordǁfloat__mutmut_*'
    'drs.train.x__epochs__mutmut_*'                    # the training loop
    'drs.train.x__batch_loss__mutmut_*'
    'drs.train.x_atomic_save__mutmut_*'
    'drs.train.x_step_decay__mutmut_*'
    'drs.train.x_poly_decay__mutmut_*'
)
[ "$#" -gt 0 ] && CORE=("$@")
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$BIN/mutmut" run --max-children "${MUTMUT_CHILDREN:-1}" "${CORE[@]}" || true
"$BIN/python" scripts/mutation_score.py "${CORE[@]}"
