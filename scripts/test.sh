#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run calls it).
# Installs what the tests need on a fresh Debian machine, then runs every test:
#   unit + integration tests of the workspace (real processes on loopback,
#   Wireshark dissector checks via ../shared/tools/rserpool-dissect),
#   and the SCTP / RSPLIB interop scenarios inside the sctp-vm when available.
# Usage: scripts/test.sh [--no-vm]
set -euo pipefail
cd "$(dirname "$0")/.."

run_vm=1
for a in "$@"; do
  case "$a" in
    --no-vm) run_vm=0 ;;
    *) echo "usage: $0 [--no-vm]" >&2; exit 2 ;;
  esac
done

need_pkgs=()
command -v tshark >/dev/null 2>&1 || need_pkgs+=(tshark)
command -v text2pcap >/dev/null 2>&1 || need_pkgs+=(wireshark-common)
# The gateway's tests and benchmark: ab, dig, curl (haproxy: bench/gateway.sh only).
command -v ab >/dev/null 2>&1 || need_pkgs+=(apache2-utils)
command -v dig >/dev/null 2>&1 || need_pkgs+=(dnsutils)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v haproxy >/dev/null 2>&1 || need_pkgs+=(haproxy)
# RSPLIB's component status monitor (CSP reports), systemd-analyze and man (packaging).
command -v cspmonitor >/dev/null 2>&1 || need_pkgs+=(rsplib-tools)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
command -v man >/dev/null 2>&1 || need_pkgs+=(man-db)
# The HTTP endpoint's tests: promtool (metrics format), headless Chromium (dashboard),
# tmux (rsp monitor).
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The Debian package is built with cargo-deb (a pinned version: its options change).
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "==> installing cargo-deb"
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi

# Many idle connections are part of the tests.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

echo "==> cargo test --workspace"
cargo test --workspace --locked -- --test-threads=2

if [ "$run_vm" = 1 ] && [ -x tests/sctp-vm/run.sh ]; then
  echo "==> SCTP / RSPLIB interop scenarios in the sctp-vm"
  tests/sctp-vm/run.sh
fi
