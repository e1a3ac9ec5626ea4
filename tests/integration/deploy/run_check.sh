#!/usr/bin/env bash
# Runs one deploy check (a Node script in this folder) with the npm packages of package.json,
# installed once per build tree into $DEPLOY_NPM_DIR by `run_check.sh install` (the
# deploy_npm_install test, a ctest fixture the checks require).
#   run_check.sh install          npm ci into $DEPLOY_NPM_DIR unless package-lock.json is unchanged
#   run_check.sh check_X.cjs      node check_X.cjs with those packages
# Needs Debian's nodejs (>= 18) and npm; the install needs the npm registry the first time only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
npm_dir=${DEPLOY_NPM_DIR:?DEPLOY_NPM_DIR must name the folder for the npm packages}

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "deploy checks: '$1' is not installed; they need Debian's packages nodejs and npm" \
      "(apt-get install nodejs npm)" >&2
    exit 1
  fi
}
need node
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  echo "deploy checks: node $(node --version) is too old; they need node >= 18" >&2
  exit 1
fi

if [ "${1:-}" = install ]; then
  need npm
  stamp=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ -d "$npm_dir/node_modules" ] && [ "$(cat "$npm_dir/.installed" 2>/dev/null)" = "$stamp" ]; then
    echo "deploy checks: npm packages up to date in $npm_dir"
    exit 0
  fi
  mkdir -p "$npm_dir"
  rm -f "$npm_dir/.installed"
  cp "$here/package.json" "$here/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --prefer-offline --loglevel=warn \
    --cache "$npm_dir/.npm-cache")
  echo "$stamp" >"$npm_dir/.installed"
  echo "deploy checks: npm packages installed in $npm_dir"
  exit 0
fi

script=${1:?usage: run_check.sh install | check_X.cjs}
if [ ! -f "$npm_dir/.installed" ]; then
  echo "deploy checks: npm packages missing in $npm_dir: run the deploy_npm_install test" \
    "(ctest -R deploy_) or '$0 install'" >&2
  exit 1
fi
NODE_PATH="$npm_dir/node_modules" exec node "$here/$script"
