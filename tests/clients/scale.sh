#!/bin/bash
# PostgreSQL's server binaries are not on PATH: the scale tests look in /usr/lib/postgresql/<major>/bin.
set -euo pipefail
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { echo "PostgreSQL server missing (apt-get install postgresql)" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "no postgres user (the postgresql package creates it)" >&2; exit 1; }
