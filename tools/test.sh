#!/usr/bin/env bash
# Install everything the test suite needs into venvs of its own and run it: the README's test
# command, and what CI runs (.ci/run). The caller's Python environment is never touched.
#
#   bash tools/test.sh             # ruff + mypy; pytest in the main venv (numpy 2, torch, the
#                                  # HLS C-sim), then in a venv with real pynq 4.0.0 + numpy 1.x
#   bash tools/test.sh --quick     # ruff + mypy + pytest -m "not slow", main venv only
#   bash tools/test.sh -k params   # other arguments go to pytest (both runs)
#
# Environment (docs/ENVIRONMENT.md):
#   PYTHON=python3.X   the interpreter the venvs are made from (default python3)
#   TEST_VENV=DIR      the main venv (default .venv-test in the checkout: CI's fresh clone gets a
#                      fresh one; a developer's is reused, and reinstalled when pyproject.toml,
#                      setup.py or this script change)
#   PYNQ_VENV=DIR      the pynq venv (default .venv-test-pynq)
#   SKIP_PYNQ_VENV=1   the main venv's run only
#   TEST_TIMEOUT=S     seconds one test may take before it fails as hung (default 900)
#
# Exit status: the first failing pytest run's, else 1 if ruff or mypy failed, else 5 if a
# pytest run collected nothing (e.g. -k matching no test), else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Pinned: a new release of either must not turn CI red by itself.
RUFF="ruff==0.17.6"
MYPY="mypy==2.4.1"
# torch pinned: 2.13.0 is the CPU build on this machine's disk; a bare "torch" would pull CUDA.
TORCH="torch==2.13.0"
# Only hls4ml's ap_types headers are used (hls_src/Makefile): --no-deps, in the venv.
HLS4ML="hls4ml==1.3.0"
PYNQ="pynq==4.0.0"
# tests/test_packaging.py builds the wheel offline with the venv's own setuptools; the one a
# venv is made with (65 on Python 3.11) has no bdist_wheel, so those tests would skip.
SETUPTOOLS="setuptools>=70.1"

QUICK=0
PYTEST_ARGS=()
for arg in "$@"; do
  if [[ $arg == --quick ]]; then QUICK=1; else PYTEST_ARGS+=("$arg"); fi
done
BASE=${PYTHON:-python3}
VENV=${TEST_VENV:-$ROOT/.venv-test}
PVENV=${PYNQ_VENV:-$ROOT/.venv-test-pynq}
T0=$(date +%s)
say() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }

# What the installed set depends on: a change re-runs pip, otherwise a reused venv skips it.
STAMP=$(cat pyproject.toml setup.py tools/test.sh | sha256sum | cut -c1-16)

venv_ready() {  # venv_ready DIR: DIR is a venv that has this STAMP's installs
  [[ -x $1/bin/python && -f $1/.pynq-bnn-test-stamp && $(cat "$1/.pynq-bnn-test-stamp") == "$STAMP" ]]
}

make_venv() {  # make_venv DIR
  if [[ ! -x $1/bin/python ]]; then
    say "creating venv $1 ($($BASE --version 2>&1))"
    "$BASE" -m venv "$1"
  fi
  rm -f "$1/.pynq-bnn-test-stamp"
}

pip_in() {  # pip_in DIR args...
  local dir=$1; shift
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

# ------------------------------------------------------------------ main venv
if venv_ready "$VENV"; then
  say "main venv $VENV is up to date"
  # the editable install's native engine: rebuild if bnn_engine.c changed (a no-op otherwise)
  (cd "$ROOT" && "$VENV/bin/python" setup.py -q build_ext --inplace >/dev/null)
else
  make_venv "$VENV"
  say "installing pynq-bnn[test] (editable), $TORCH, $RUFF, $MYPY into $VENV"
  pip_in "$VENV" "$SETUPTOOLS" "$TORCH" "$RUFF" "$MYPY" -e ".[test]"
  pip_in "$VENV" --no-deps "$HLS4ML"
  echo "$STAMP" > "$VENV/.pynq-bnn-test-stamp"
fi
PY=$VENV/bin/python

say "ruff check . ($RUFF) and mypy ($MYPY; configuration in pyproject.toml)"
LINT=0
"$PY" -m ruff check --output-format concise . || LINT=1
"$PY" -m mypy || LINT=1

say "building the HLS kernel's C-simulation library (make -C hls_src lib)"
make -C hls_src lib PYTHON="$PY" >/dev/null

# A hung test fails after this many seconds instead of using up CI's time (pytest-timeout, in
# the test extra); the slowest single test (the HLS C-sim build and run) takes under a minute.
TEST_TIMEOUT=${TEST_TIMEOUT:-900}

run_pytest() {  # run_pytest PYTHON args...; sets RC
  local py=$1; shift
  RC=0
  "$py" -m pytest -q --timeout="$TEST_TIMEOUT" "$@" || RC=$?
}

RESULTS=()
if [[ $QUICK == 1 ]]; then
  say "quick test loop: pytest -m 'not slow' (numpy $("$PY" -c 'import numpy; print(numpy.__version__)'))"
  run_pytest "$PY" -m "not slow" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
  RESULTS+=("$RC")
else
  say "test suite (numpy $("$PY" -c 'import numpy; print(numpy.__version__)'))"
  run_pytest "$PY" --durations=15 ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
  RESULTS+=("$RC")

  if [[ -z ${SKIP_PYNQ_VENV:-} ]]; then
    if venv_ready "$PVENV"; then
      say "pynq venv $PVENV is up to date"
    else
      make_venv "$PVENV"
      say "installing $PYNQ and pynq-bnn[test] (editable) into $PVENV"
      # pynq imports pycparser.plyparser, gone in pycparser 3 (4.0.0 pins it; 3.0.1 did not)
      pip_in "$PVENV" "$PYNQ" "pycparser<3" -e ".[test]"
      echo "$STAMP" > "$PVENV/.pynq-bnn-test-stamp"
    fi
    say "test suite again with real pynq 4.0.0 and numpy $("$PVENV/bin/python" -c 'import numpy; print(numpy.__version__)') (venv $PVENV)"
    run_pytest "$PVENV/bin/python" -p no:cacheprovider ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
    RESULTS+=("$RC")
  fi
fi

say "done: pytest exit statuses ${RESULTS[*]}, ruff + mypy $([[ $LINT == 0 ]] && echo clean || echo FAILED)"
NONE=0
for rc in "${RESULTS[@]}"; do
  if [[ $rc == 5 ]]; then NONE=1; elif [[ $rc != 0 ]]; then exit "$rc"; fi
done
[[ $LINT == 0 ]] || exit 1
[[ $NONE == 0 ]] || exit 5
exit 0
