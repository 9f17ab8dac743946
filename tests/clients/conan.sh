# conan 2 and conan_server come from tests/clients/conan.pip into the venv; check they run
set -euo pipefail
"$VENV/bin/conan" --version
test -x "$VENV/bin/conan_server" || { echo "conan_server missing from $VENV" >&2; exit 1; }
