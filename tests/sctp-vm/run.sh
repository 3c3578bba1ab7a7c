#!/usr/bin/env bash
# tests/sctp-vm/run.sh - build static test binaries, boot the SCTP test VM once and run
# the scenarios of tests/sctp-vm/guest.sh inside it.
#
# usage: tests/sctp-vm/run.sh [--no-build] [--keep] [--timeout SECS] [SCENARIO...]
#   SCENARIO...     names from guest.sh (default: all; `guest.sh --list` shows them)
#   --no-build      reuse the binaries already in the target dir
#   --keep          keep the temp dir (binaries, guest logs under logs/) and print its path
#   --timeout SECS  limit for the whole guest run (default 600)
# Env: SCTP_VM_TOOLS     sctp-vm scripts (default: $REPO/../shared/tools/sctp-vm)
#      SCTP_VM_WORKDIR   VM image dir used by those scripts (default /var/tmp/sctp-vm)
#      VM_TARGET_DIR     cargo target dir for the static build (default $REPO/target/vm)
#      SCENARIO_TIMEOUT  per-scenario limit inside the guest (default 90)
# Output: the guest's per-scenario output, "PASS name"/"FAIL name" lines and a final
# "N passed, M failed". Exit status 0 only if every scenario passed.
#
# Adding a binary: append to BUILDS (cargo args | path under target/<triple>/release |
# name in the VM). Unit-test binaries go in TEST_BUILDS (cargo args | name in the VM).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TOOLS=${SCTP_VM_TOOLS:-$REPO/../shared/tools/sctp-vm}
WORK=${SCTP_VM_WORKDIR:-/var/tmp/sctp-vm}
TARGET_DIR=${VM_TARGET_DIR:-$REPO/target/vm}
TRIPLE=x86_64-unknown-linux-gnu

BUILDS=(
    "-p rserpool --example sctp_smoke|examples/sctp_smoke|sctp_smoke"
    "-p rsp --bin rsp|rsp|rsp"
)
TEST_BUILDS=(
    "-p rserpool --lib|rserpool-lib-tests"
)

BUILD=1 KEEP=0 TIMEOUT=600
while [ $# -gt 0 ]; do
    case "$1" in
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done

say() { printf '[sctp-vm-tests] %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T_START=$(now)

[ -x "$TOOLS/run-in-vm.sh" ] || { say "no sctp-vm tools at $TOOLS (set SCTP_VM_TOOLS)"; exit 2; }

# ---- (a) static binaries
export CARGO_TARGET_DIR=$TARGET_DIR
REL=$TARGET_DIR/$TRIPLE/release
if [ "$BUILD" = 1 ]; then
    t=$(now)
    export RUSTFLAGS='-C target-feature=+crt-static'
    for b in "${BUILDS[@]}"; do
        IFS='|' read -r args _ _ <<<"$b"
        # shellcheck disable=SC2086
        (cd "$REPO" && cargo build --release --target "$TRIPLE" $args)
    done
    for b in "${TEST_BUILDS[@]}"; do
        IFS='|' read -r args name <<<"$b"
        # shellcheck disable=SC2086
        exe=$(cd "$REPO" && cargo test --release --target "$TRIPLE" $args --no-run \
                --message-format=json | grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4)
        [ -n "$exe" ] || { say "no test executable for $args"; exit 2; }
        cp "$exe" "$REL/$name"
    done
    say "static build: $(since "$t")s"
fi

# ---- (b) VM image
if ! { [ -s "$WORK/out/vmlinux" ] || [ -s "$WORK/out/vmlinuz" ]; } ||
   ! { [ -s "$WORK/out/initramfs.cpio" ] || [ -s "$WORK/out/initramfs.cpio.gz" ]; }; then
    t=$(now)
    say "VM image missing in $WORK/out: running build-vm.sh"
    "$TOOLS/build-vm.sh"
    say "build-vm.sh: $(since "$t")s"
fi

# ---- (c) temp dir with binaries + guest script
TMP=$(mktemp -d /tmp/sctp-vm-tests.XXXXXX)
cleanup() { if [ "$KEEP" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
for b in "${BUILDS[@]}"; do
    IFS='|' read -r _ path name <<<"$b"
    [ -x "$REL/$path" ] || { say "missing $REL/$path (run without --no-build)"; exit 2; }
    cp "$REL/$path" "$TMP/$name"
done
for b in "${TEST_BUILDS[@]}"; do
    IFS='|' read -r _ name <<<"$b"
    [ -x "$REL/$name" ] || { say "missing $REL/$name (run without --no-build)"; exit 2; }
    cp "$REL/$name" "$TMP/$name"
done
cp "$HERE/guest.sh" "$TMP/guest.sh"
chmod +x "$TMP"/*

# ---- (d) one VM boot for all scenarios
t=$(now)
say "booting VM: run-in-vm.sh --extra $TMP --timeout $TIMEOUT -- ./guest.sh $*"
set +e
"$TOOLS/run-in-vm.sh" --extra "$TMP" --timeout "$TIMEOUT" -- ./guest.sh "$@" | tee "$TMP/vm-output.log"
rc=${PIPESTATUS[0]}
set -e
say "VM run: $(since "$t")s (exit $rc); total $(since "$T_START")s"

# ---- (e) summary; the guest prints the "N passed, M failed" line itself
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed' "$TMP/vm-output.log"; then
    case $rc in
    124) say "VM timed out after ${TIMEOUT}s" ;;
    125) say "VM or harness failure" ;;
    *) say "guest gave no summary (exit $rc)" ;;
    esac
    echo "0 passed, 1 failed"
    exit 1
fi
grep -E '^[0-9]+ passed, [0-9]+ failed' "$TMP/vm-output.log" | tail -n1
exit "$rc"
