#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL (tests use a real server) and Chromium
# (browser tests drive it through Playwright; never `playwright install`, it downloads a browser).
# `--bench` adds what only the benchmarks use (wrk, the HTTP load generator of bench/gateway_load.py); the tests
# never need it. Safe to run again; needs root (or sudo).
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi
