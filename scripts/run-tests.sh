#!/usr/bin/env bash
# The test suite: installs the package with its test extra (including the reference
# implementation assyst 1.0.0) into the active venv (or ./.venv), then runs pytest.
# As root with apt (CI), Debian's graphviz is installed so notebooks render the graph, and
# Debian's chromium and chromium-driver for the browser test; the
# SLURM tests install and start their own one-node cluster (scripts/slurm/start.sh). The DFT
# tests need GPAW (the [dft] extra), which builds from source with a C++ compiler against
# libxc, OpenBLAS, LAPACK and Open MPI (Debian packages, installed here as root with apt).
# Extra arguments go to pytest, e.g. `scripts/run-tests.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v dot >/dev/null; then
  { apt-get install -y -qq --no-install-recommends graphviz >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && apt-get install -y -qq --no-install-recommends graphviz >/dev/null 2>&1; }; } \
    || echo "run-tests: graphviz not installed; graph drawings are skipped" >&2
fi
# The browser test (tests/test_browser.py) drives JupyterLab + PyironFlow in Debian's headless
# Chromium with its matching chromedriver (no browser downloads); ~60 s the first time
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromedriver >/dev/null; then
  { apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; } \
    || echo "run-tests: chromium not installed; the browser test will fail" >&2
fi
DFT_APT="libxc-dev libopenblas-dev liblapack-dev libopenmpi-dev openmpi-bin g++"
# installed unless all are there (a machine with Open MPI may still lack libxc)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg -s $DFT_APT >/dev/null 2>&1; then
  { apt-get install -y -qq --no-install-recommends $DFT_APT >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && apt-get install -y -qq --no-install-recommends $DFT_APT >/dev/null 2>&1; }; } \
    || echo "run-tests: GPAW's build dependencies not installed; GPAW will not build" >&2
fi
# torch first, pinned: the CPU wheel of 2.13.0 lies on this machine's disk; an unpinned torch
# (asked for by mace-torch) would fetch a CUDA build of several GB.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet ".[test,fit,uip]"
# GPAW (the [dft] extra) compiles as C++: with CC=gcc it fails on `#include <algorithm>`;
# about 4 minutes the first time, nothing when it is installed. Without its libraries (not
# root, no apt) the build fails: the rest of the suite still runs, the GPAW tests skip (under
# CI, with CI set, they fail)
CC=g++ OMPI_CC=g++ python -m pip install --quiet ".[dft]" \
  || echo "run-tests: GPAW (the [dft] extra) did not build; the DFT tests skip" >&2
if [ "$#" -gt 0 ]; then
  exec python -m pytest "$@"
fi
# The whole suite as two pytest processes, one per core: most tests use one core, and three
# files are long and independent of the rest (MACE fits on one torch thread, a venv with
# pyiron_potentialfit built by pip, JupyterLab in a browser); none of them starts SLURM.
# Their output follows the main run's; the exit status is non-zero if either failed.
side=(tests/test_fit.py tests/test_potentialfit_integration.py tests/test_browser.py)
log=$(mktemp)
# --durations: the CI log names the slowest tests and their seconds (what each part costs)
python -m pytest --durations=10 "${side[@]}" >"$log" 2>&1 &
pid=$!
status=0
python -m pytest --durations=15 "${side[@]/#/--ignore=}" || status=$?
wait "$pid" || status=$?
echo "---- ${side[*]} ----"
cat "$log"
rm -f "$log"
exit "$status"
