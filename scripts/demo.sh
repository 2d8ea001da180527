#!/usr/bin/env bash
# Install ndereg_ref with its 'experiments' extra into ./.venv and run the main job: a quick reproduction on
# real handwritten digits (scikit-learn's 8×8 digits, the image as the ODE state): vanilla vs ERNODE vs local
# regularization, printing a table and writing results/digits/{table.md,results.json,*.png}.
# Extra arguments go to the command (e.g. --progress).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
setup_venv experiments
exec ndereg-ref reproduce digits --quick "$@"
