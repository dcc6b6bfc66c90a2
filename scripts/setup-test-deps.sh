#!/usr/bin/env bash
# System packages some tests use (each test skips with its reason where one is missing):
#   fiu-utils  - libfiu's fiu-run, to inject ENOSPC/EIO into real write and fsync calls
#   chromium   - a real browser for the report and dashboard tests
# Needs root and apt; does nothing (and fails nothing) elsewhere.
set -u
[ "$(id -u)" = 0 ] || { echo "setup-test-deps: not root, skipping system packages"; exit 0; }
command -v apt-get >/dev/null || { echo "setup-test-deps: no apt-get, skipping system packages"; exit 0; }
need=()
command -v fiu-run >/dev/null || need+=(fiu-utils)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} = 0 ] && exit 0
echo "setup-test-deps: installing ${need[*]}"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/tmp/setup-test-deps.log 2>&1 \
  || echo "setup-test-deps: could not install ${need[*]} (see /tmp/setup-test-deps.log); those tests will skip"
exit 0
