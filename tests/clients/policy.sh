# pnpm and yarn 4 for the supply-chain policy tests (same filtered view as npm)
set -euo pipefail
command -v pnpm >/dev/null && pnpm --version | grep -q '^9\.' || npm install -g --no-audit --no-fund pnpm@9
command -v yarn >/dev/null && yarn --version | grep -q '^4\.' || npm install -g --no-audit --no-fund @yarnpkg/cli-dist@4
