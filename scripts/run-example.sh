#!/usr/bin/env bash
# The main job on its embedded defaults: Cu, 1-3 atoms, all 230 space groups, EMT; the training
# set ends labelled and curated.
# Installs everything it needs into the active venv (or ./.venv) first. Extra arguments go to
# `pyiron-assyst run`, e.g. `scripts/run-example.sh examples/cu_emt.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m pip install --quiet .
pyiron-assyst run "$@"
