#!/usr/bin/env bash
# Mutation testing of the core functions (docs/testing.md): mutmut (pinned in pyproject.toml's
# `test` extra, configured under [tool.mutmut]) mutates the functions below one small change at a
# time and runs, for each mutant, the fast tests of [tool.mutmut] that reach that function; a
# mutant no test fails "survived". Arguments replace the default function patterns, e.g.
#   scripts/mutation-test.sh 'drs.evaluation.metrics.*'
# Results stay in mutants/ (git-ignored): `mutmut results`, `mutmut show NAME` for a survivor's diff.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VIRTUAL_ENV:-$PWD/.venv}/bin"
[ -x "$BIN/mutmut" ] || BIN="$(dirname "$(command -v mutmut)")"
CORE=(
    'drs.labels.rule.x_pseudo_label__mutmut_*'          # the pseudo-label rule
    'drs.evaluation.metrics.*'                                    # metrics
    'drs.models.drs.xǁDRSǁcontroller__mutmut_*'        # the DRS module
    'drs.models.drs.xǁDRSǁforward__mutmut_*'
    'drs.inference.maps.x_combine__mutmut_*'                  # map building
    'drs.inference.maps.x_forward_scales__mutmut_*'
    'drs.store.reader.xǁMapStoreǁread__mutmut_*'               # the store: reading maps back
    'drs.store.reader.xǁMapStoreǁdense__mutmut_*'
    'drs.store.reader.xǁMapStoreǁheader__mutmut_*'
    'drs.store.reader.xǁMapRecordǁfloat__mutmut_*'
    'drs.training.loop.x__epochs__mutmut_*'                    # the training loop
    'drs.training.loop.x__batch_loss__mutmut_*'
    'drs.store.model_files.x_atomic_save__mutmut_*'
    'drs.training.schedules.x_step_decay__mutmut_*'
    'drs.training.schedules.x_poly_decay__mutmut_*'
)
[ "$#" -gt 0 ] && CORE=("$@")
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$BIN/mutmut" run --max-children "${MUTMUT_CHILDREN:-1}" "${CORE[@]}" || true
"$BIN/python" scripts/mutation_score.py "${CORE[@]}"
