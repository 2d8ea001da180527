# Sourced (not run) by scripts/demo.sh and scripts/test.sh from the repository root.
# setup_venv EXTRA: create ./.venv with $PYTHON (default python3) unless it exists, activate it, upgrade pip
# and install ndereg_ref in editable mode with its optional dependencies EXTRA (pyproject.toml).
setup_venv() {
  local python=${PYTHON:-python3}
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  . .venv/bin/activate
  python -m pip install -q --upgrade pip
  python -m pip install -q -e ".[$1]"
}
