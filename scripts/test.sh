#!/usr/bin/env bash
# `npm test`: everything CI checks, in order of speed. Installs the Debian packages the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Debian test dependencies"
bash scripts/install-test-deps.sh

echo "== Type check (tsc --noEmit, strict)"
npx tsc --noEmit -p tsconfig.json

echo "== Lint and format check (Biome)"
npx biome check .

echo "== Viewer build"
npm run --silent build:viewer

echo "== Tests (vitest)"
npx vitest run "$@"
