#!/usr/bin/env bash
# Install ndereg_ref into ./.venv and run the main job: a quick spiral neural-ODE reproduction that prints
# a table and writes results/spiral/{table.md,results.json,*.png}.  Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
exec ndereg-ref reproduce spiral --quick "$@"
