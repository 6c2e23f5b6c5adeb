#!/usr/bin/env bash
# Installs what the benchmarks need beyond `npm run setup`: pgcopydb (Debian package), the third way
# to copy a PostgreSQL database in benchmark 5. Idempotent; never fatal: without it, benchmark 5
# reports that row as unavailable with the reason.
set -u
if command -v pgcopydb >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench/setup.sh: pgcopydb is missing and this is not a Debian/Ubuntu machine (no apt-get); benchmark 5 will report it as unavailable." >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "bench/setup.sh: pgcopydb is missing and installing it needs root (apt-get install pgcopydb); benchmark 5 will report it as unavailable." >&2
    exit 0
  fi
fi
echo "bench/setup.sh: installing pgcopydb (apt-get install pgcopydb)..."
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgcopydb >/tmp/tiershift-bench-apt.log 2>&1; then
  # The package lists may be stale or missing: refresh them once and try again.
  $SUDO apt-get update -q >>/tmp/tiershift-bench-apt.log 2>&1
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgcopydb >>/tmp/tiershift-bench-apt.log 2>&1; then
    echo "bench/setup.sh: apt-get install pgcopydb failed (see /tmp/tiershift-bench-apt.log); benchmark 5 will report it as unavailable." >&2
    exit 0
  fi
fi
echo "bench/setup.sh: $(pgcopydb --version 2>&1 | head -1)"
