#!/usr/bin/env bash
# bower 1.8 from npm, installed into the venv (no Debian/PyPI bower).
set -euo pipefail
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/bower" ] && exit 0
npm install --silent --no-audit --no-fund --prefix "$VENV/bower" bower@1.8 >/dev/null
ln -sf "$(cd "$VENV" && pwd)/bower/node_modules/.bin/bower" "$VENV/bin/bower"
"$VENV/bin/bower" --version
