#!/usr/bin/env bash
# Install everything the test suite needs and run it: the README's test command, and what CI runs.
#
#   bash tools/test.sh            # main environment (numpy 2) + a pynq venv (pynq 4.0.0, numpy 1.x)
#   SKIP_PYNQ_VENV=1 bash tools/test.sh   # main environment only
#
# Extra pytest arguments are passed through: bash tools/test.sh -k params
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== installing pynq-bnn with test, train and csim dependencies"
# torch pinned: 2.13.0 is the CPU build on this machine's disk; a bare "torch" would pull CUDA.
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[test]"
# Only the ap_types headers are needed from hls4ml: skip its (large) dependencies.
$PY -m pip install -q --no-deps "hls4ml==1.3.0"

echo "== building the HLS kernel's C-simulation library"
make -C hls_src lib >/dev/null

echo "== test suite (numpy $($PY -c 'import numpy; print(numpy.__version__)'))"
$PY -m pytest -q "$@"

if [[ -z "${SKIP_PYNQ_VENV:-}" ]]; then
  VENV=${PYNQ_VENV:-/tmp/pynq-bnn-venv-pynq}
  echo "== test suite again with real pynq 4.0.0 and numpy < 2 (venv $VENV)"
  [[ -x $VENV/bin/python ]] || $PY -m venv "$VENV"
  "$VENV/bin/pip" install -q "pynq==4.0.0" "pycparser<3"
  "$VENV/bin/pip" install -q -e ".[test]"
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
fi
