#!/usr/bin/env bash
# The test suite: installs the package with its test extra (including the reference
# implementation assyst 1.0.0) into the active venv (or ./.venv), then runs pytest.
# Extra arguments go to pytest, e.g. `scripts/run-tests.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m pip install --quiet ".[test]"
python -m pytest "$@"
