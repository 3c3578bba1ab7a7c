#!/bin/sh
# guest.sh - runs INSIDE the SCTP test VM (busybox sh, root, cwd /extra = the temp dir
# that tests/sctp-vm/run.sh filled with our static binaries).
#
#   ./guest.sh [SCENARIO...]     run the given scenarios (default: all in $SCENARIOS)
#   ./guest.sh --one SCENARIO    run one scenario function directly (used internally)
#   ./guest.sh --list            print the scenario names
#
# Adding a scenario: write a function `scenario_<name>` below (exit status 0 = pass;
# print whatever helps debugging) and append <name> to SCENARIOS. Binaries built by
# run.sh are in the cwd (./sctp_smoke, ./rserpool-lib-tests, ...); RSPLIB tools
# (rspregistrar, rspserver, rspterminal, hsdump) are on PATH. Every scenario runs under
# `timeout -s KILL $SCENARIO_TIMEOUT`; its output goes to logs/<name>.log and is echoed.
SCENARIOS="lib_tests basic_v4 basic_v6 basic_site multihome multihome_mixed
wildcard_v6 wildcard_v4 big_messages refused peer_abort peer_killed peer_exit rsplib_registrar_hr"
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-90}
LOGS=${LOGS:-$PWD/logs}

uptime_s() { cut -d' ' -f1 /proc/uptime; }
# wait_for SECONDS CMD... : poll CMD every 0.2 s
wait_for() {
    t=$(( $1 * 5 )); shift
    while [ "$t" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; t=$((t - 1)); done
    return 1
}
# stop PID: TERM, then KILL after 3 s
stop() { kill "$1" 2>/dev/null; wait_for 3 sh -c "! kill -0 $1" || kill -9 "$1" 2>/dev/null; }

# ---- scenarios ------------------------------------------------------------------------

# The crate's unit tests, where SCTP exists (on the host they take their no-SCTP paths).
scenario_lib_tests() { ./rserpool-lib-tests sctp:: --test-threads=1; }

scenario_basic_v4()   { ./sctp_smoke basic 127.0.0.1; }
scenario_basic_v6()   { ./sctp_smoke basic ::1; }
scenario_basic_site() { ./sctp_smoke basic 10.0.0.1; }
scenario_multihome()  { ./sctp_smoke multihome 127.0.0.1 10.0.0.1; }
scenario_multihome_mixed() { ./sctp_smoke multihome ::1 127.0.0.1 10.0.0.1; }
scenario_wildcard_v6() { ./sctp_smoke wildcard :: 127.0.0.1 ::1 10.0.0.1; }
scenario_wildcard_v4() { ./sctp_smoke wildcard 0.0.0.0 127.0.0.1 10.0.0.1; }
scenario_big_messages() { ./sctp_smoke big 127.0.0.1 1000 65536 100000 150000 200000; }
scenario_refused()     { ./sctp_smoke refused 127.0.0.1 && ./sctp_smoke refused ::1; }
scenario_peer_abort()  { ./sctp_smoke peer-abort 127.0.0.1; }
scenario_peer_killed() { ./sctp_smoke peer-killed 10.0.0.1; }
scenario_peer_exit()   { ./sctp_smoke peer-exit 10.0.0.1; }

# RSPLIB's registrar answers our ASAP_HANDLE_RESOLUTION with a (negative) response.
scenario_rsplib_registrar_hr() {
    rspregistrar -asap=0.0.0.0:3863 -enrp=0.0.0.0:9901 -loglevel=2 -logcolor=off \
        >"$LOGS/rspregistrar.out" 2>&1 &
    rp=$!
    if ! wait_for 20 grep -q ' 3863 ' /proc/net/sctp/eps; then
        echo "rspregistrar did not come up:"; cat "$LOGS/rspregistrar.out"; stop $rp; return 1
    fi
    echo "rspregistrar up at $(uptime_s)s; SCTP endpoints:"; cat /proc/net/sctp/eps
    rc=0
    ./sctp_smoke asap-hr 127.0.0.1:3863 || rc=1
    ./sctp_smoke asap-hr 10.0.0.1:3863 || rc=1
    stop $rp
    echo "--- rspregistrar output (last 20 lines)"; tail -n 20 "$LOGS/rspregistrar.out"
    return $rc
}

# ---- runner ---------------------------------------------------------------------------

case "$1" in
--one) "scenario_$2"; exit $? ;;
--list) for s in $SCENARIOS; do echo "$s"; done; exit 0 ;;
esac

mkdir -p "$LOGS"
[ $# -gt 0 ] && SCENARIOS="$*"
echo "guest: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, uptime $(uptime_s)s"
echo "guest: addresses: $(ip -o addr show dev lo | awk '{print $4}' | tr '\n' ' ')"
pass=0 fail=0 failed=""
for s in $SCENARIOS; do
    if ! type "scenario_$s" >/dev/null 2>&1; then
        echo "FAIL $s: no such scenario"; fail=$((fail + 1)); failed="$failed $s"; continue
    fi
    t0=$(uptime_s)
    echo "=== $s (uptime ${t0}s)"
    timeout -s KILL "$SCENARIO_TIMEOUT" sh "$0" --one "$s" >"$LOGS/$s.log" 2>&1
    rc=$?
    t1=$(uptime_s)
    sed 's/^/    /' "$LOGS/$s.log"
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    if [ "$rc" = 0 ]; then
        echo "PASS $s (${dt}s)"; pass=$((pass + 1))
    else
        [ "$rc" = 137 ] && echo "    (killed after ${SCENARIO_TIMEOUT}s timeout)"
        echo "FAIL $s (exit $rc, ${dt}s)"; fail=$((fail + 1)); failed="$failed $s"
    fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
