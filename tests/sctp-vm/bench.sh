#!/usr/bin/env bash
# tests/sctp-vm/bench.sh - `rsp bench resolve|register` over SCTP inside the SCTP VM,
# against our registrar and RSPLIB's rspregistrar in the same run (same load generator,
# alternating rounds: `rsp bench --registrar OURS --versus RSPLIB`). Not part of CI.
#
# usage: tests/sctp-vm/bench.sh [--no-build] [--keep] [--duration 6s] [--clients 1,16,256]
# Output: the two tables of `rsp bench` (resolve, register); the "vs" column is our
# registrar's ops/s divided by rspregistrar's. The VM emulates its CPU (TCG), so only
# ratios mean anything, never the absolute numbers.
#
# The same file runs inside the VM with --guest (busybox sh is enough for that part).
if [ "${1:-}" = "--guest" ]; then
    shift
    DURATION=$1 CLIENTS=$2
    wait_for() {
        t=$(( $1 * 5 )); shift
        while [ "$t" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; t=$((t - 1)); done
        return 1
    }
    mkdir -p logs
    echo "guest: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs"
    # RSPLIB on 3863 (its PEs/PUs default), ours on 3864; both SCTP, both on every address.
    rspregistrar -asap=0.0.0.0:3863 -enrp=0.0.0.0:9901 -quiet -loglevel=2 -logcolor=off >logs/rspregistrar.log 2>&1 &
    rp=$!
    # The register workload re-registers back to back from one address: no per-connection
    # registration rate and no per-source PE quota (rspregistrar has neither).
    ./rsp registrar --listen sctp://0.0.0.0:3864 --admin off --announce=false \
        --max-registration-rate 0 --max-pes-per-source 0 >logs/rsp.log 2>&1 &
    op=$!
    wait_for 20 grep -q ' 3863 ' /proc/net/sctp/eps || { echo "rspregistrar did not start"; exit 1; }
    wait_for 20 grep -q ' 3864 ' /proc/net/sctp/eps || { echo "rsp registrar did not start"; cat logs/rsp.log; exit 1; }
    rc=0
    for w in resolve register; do
        echo "=== rsp bench $w: ours sctp://10.0.0.1:3864 versus rspregistrar sctp://10.0.0.1:3863"
        ./rsp bench "$w" --registrar sctp://10.0.0.1:3864 --versus sctp://10.0.0.1:3863 \
            --duration "$DURATION" --clients "$CLIENTS" --rounds 3 2>logs/bench-$w.err || {
            rc=1; tail -n 20 logs/bench-$w.err; }
        grep -E '^(registrar|versus|echo) .*clients:' logs/bench-$w.err
    done
    kill $op $rp 2>/dev/null
    if grep -q 'errors, first' logs/bench-*.err; then
        echo "--- rspregistrar log (warnings; last 10 lines)"; tail -n 10 logs/rspregistrar.log
        echo "--- rsp registrar log (last 10 lines)"; tail -n 10 logs/rsp.log
    fi
    exit $rc
fi

set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TOOLS=${SCTP_VM_TOOLS:-$REPO/../shared/tools/sctp-vm}
TARGET_DIR=${VM_TARGET_DIR:-$REPO/target/vm}
TRIPLE=x86_64-unknown-linux-gnu
BUILD=1 KEEP=0 DURATION=6s CLIENTS=1,16,256
while [ $# -gt 0 ]; do
    case "$1" in
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --clients) CLIENTS=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$BUILD" = 1 ]; then
    (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --target "$TRIPLE" -p rsp --bin rsp)
fi
TMP=$(mktemp -d /tmp/sctp-vm-bench.XXXXXX)
cleanup() { if [ "$KEEP" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
cp "$TARGET_DIR/$TRIPLE/release/rsp" "$HERE/bench.sh" "$TMP/"
chmod +x "$TMP"/*
"$TOOLS/run-in-vm.sh" --extra "$TMP" --timeout 900 -- sh ./bench.sh --guest "$DURATION" "$CLIENTS"
