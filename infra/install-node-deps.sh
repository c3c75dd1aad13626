#!/usr/bin/env bash
# npm packages the browser tests inject into the page (axe-core, the accessibility checker),
# installed into var/node/axe/ (gitignored) when missing. Versions pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."
AXE_VERSION=4.14.1
target=var/node/axe/node_modules/axe-core/axe.min.js
if [ -f "$target" ] && grep -q "\"version\": \"$AXE_VERSION\"" var/node/axe/node_modules/axe-core/package.json; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm is missing: apt-get install npm (or nodejs)" >&2; exit 1; }
mkdir -p var/node/axe
npm install --prefix var/node/axe --no-audit --no-fund --silent "axe-core@$AXE_VERSION" >/dev/null
test -f "$target"
