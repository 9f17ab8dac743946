#!/bin/sh
# A long fuzz pass: tests/test_fuzz.py with many more examples than CI runs (default 20000 per test).
#   bench/fuzz_long.sh [EXAMPLES] [pytest args...]
# DEPOT_FUZZ_EXAMPLES is read by the tests only; depot processes never see DEPOT_* from the test's env.
set -eu
cd "$(dirname "$0")/.."
examples="${1:-20000}"
[ $# -gt 0 ] && shift
DEPOT_FUZZ_EXAMPLES="$examples" exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py "$@"
