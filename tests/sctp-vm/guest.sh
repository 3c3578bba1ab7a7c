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
wildcard_v6 wildcard_v4 big_messages refused peer_abort peer_killed peer_exit rsplib_registrar_hr
rsplib_pe_our_registrar announce_interop our_pe_rsplib_registrar our_pu_rsplib_failover
mixed_pool keepalive_interop sctp_and_tcp rsp_registrar_sctp enrp_ours_first enrp_rsplib_first
enrp_takeover_by_rsplib enrp_takeover_by_ours pingpong_rsplib_pes pingpong_our_pes
calcapp_rsplib_client calcapp_rsplib_pes"
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

# ---- helpers of the interop scenarios ---------------------------------------------------
# Every background process is started with `bg NAME CMD...` (output in $LOGS/NAME.log,
# PID in $NAME_pid and in $PIDS); the runner stops whatever a scenario left behind, even
# after a timeout. Registrars listen on the fixed ports RSPLIB's tools need (ASAP 3863,
# ENRP 9901, our admin 9990); PEs and PUs use 10.0.0.1 (RSPLIB drops loopback addresses).
PIDS=${PIDS:-$LOGS/pids}
# (stdin: /dev/null, or the file/fifo in $BG_IN, opened by the background child itself
# so that a fifo does not block the scenario)
bg() {
    name=$1; shift
    "$@" <"${BG_IN:-/dev/null}" >"$LOGS/$name.log" 2>&1 &
    eval "${name}_pid=$!"
    echo "$!" >>"$PIDS"
}
say() { echo "[$(uptime_s)s] $*"; }
fail() { say "FAILED: $*"; return 1; }
log_tail() { echo "--- $1 (last ${2:-15} lines)"; sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$1.log" | tail -n "${2:-15}"; }
sctp_listening() { grep -q " $1 " /proc/net/sctp/eps; }

# Our registrar on sctp://0.0.0.0:3863 + tcp://0.0.0.0:3863, admin 127.0.0.1:9990,
# keep-alives every 1 s (1 s timeout); info logs plus its per-PE lines (debug, target
# rsp::registrar). Extra flags are appended.
our_registrar() {
    bg reg ./rsp registrar --log-level info,rsp::registrar=debug --listen sctp://0.0.0.0:3863 --listen tcp://0.0.0.0:3863 \
        --admin 127.0.0.1:9990 --keepalive-interval 1s --keepalive-timeout 1s "$@"
    wait_for 20 grep -q '^rsp registrar:' "$LOGS/reg.log" || { log_tail reg; return 1; }
    say "$(grep '^rsp registrar:' "$LOGS/reg.log")"
}
# RSPLIB's registrar on the fixed ports, keep-alives every 1 s (1 s timeout).
rsplib_registrar() {
    bg rreg rspregistrar -asap=0.0.0.0:3863 -enrp=0.0.0.0:9901 -loglevel=2 -logcolor=off \
        -endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000 "$@"
    wait_for 20 sctp_listening 3863 && wait_for 20 sctp_listening 9901 || { log_tail rreg; return 1; }
    say "rspregistrar up"
}
# rsplib_pe NAME ID: RSPLIB's echo PE in EchoPool with PE identifier ID (0x…).
rsplib_pe() {
    bg "$1" rspserver -echo -poolhandle=EchoPool -registrar=10.0.0.1:3863 \
        -identifier="$2" -loglevel=3 -logcolor=off
}
# our_pe NAME ID REGISTRAR: `rsp serve echo` over SCTP (all addresses but loopback).
our_pe() {
    bg "$1" ./rsp -v serve echo --listen sctp://0.0.0.0:0 -r "$3" --pe-id "$2" --no-announces
    wait_for 20 grep -q "^registered pool=EchoPool pe=$2" "$LOGS/$1.log" || { log_tail "$1"; return 1; }
    say "$(grep "^registered" "$LOGS/$1.log")"
}
# in_dump ID: our registrar (admin 127.0.0.1:9990) lists PE ID.
in_dump() { ./rsp dump --admin 127.0.0.1:9990 | grep -q "$1"; }
# in_hsdump ID: RSPLIB's registrar lists PE ID (hsdump prints $xxxxxxxx).
in_hsdump() { hsdump 127.0.0.1:9901 -logcolor=off 2>&1 | grep -q "idx:#[0-9]*: [$]${1#0x} "; }
# terminal NAME LINE...: rspterminal through the registrar at 10.0.0.1:3863; types each
# LINE and waits until a PE echoed it ("from PE $id> LINE"); then stops the terminal.
terminal() {
    name=$1; shift
    fifo=/tmp/$name.in
    rm -f "$fifo"; mkfifo "$fifo"
    BG_IN=$fifo bg "$name" rspterminal -poolhandle=EchoPool -registrar=10.0.0.1:3863 \
        -loglevel=2 -logcolor=off
    exec 3>"$fifo"
    ok=0
    for line in "$@"; do
        echo "$line" >&3
        wait_for 20 grep -q "from PE .*> $line" "$LOGS/$name.log" || { ok=1; break; }
    done
    exec 3>&-
    eval "stop \$${name}_pid"
    grep -a "from PE" "$LOGS/$name.log" | sed 's/\x1b\[[0-9;]*m//g'
    [ $ok = 0 ] || { log_tail "$name" 30; fail "rspterminal did not get its lines echoed"; }
}
# echoed_by NAME ID: the terminal's lines were echoed by PE ID.
echoed_by() { grep -a "from PE [$]${2#0x}>" "$LOGS/$1.log" >/dev/null; }

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

# ---- interop scenarios: RSPLIB and rserpool in one handlespace ----------------------------

# 1. RSPLIB's PE registers with our registrar (SCTP); `rsp dump` shows its PE identifier and
#    policy; rspterminal resolves EchoPool through our registrar and gets its lines echoed.
#    Our registrar announces (multicast on lo): RSPLIB must parse the announces.
scenario_rsplib_pe_our_registrar() {
    our_registrar || return 1
    rsplib_pe rs1 0x1a2b3c4d
    wait_for 20 in_dump 0x1a2b3c4d || { log_tail rs1; log_tail reg; fail "RSPLIB PE not registered"; return 1; }
    ./rsp dump --admin 127.0.0.1:9990
    ./rsp dump --admin 127.0.0.1:9990 --json >"$LOGS/dump.json"
    grep -q '"id": "0x1a2b3c4d"' "$LOGS/dump.json" || { fail "PE id"; return 1; }
    grep -q '"policy": "rr"' "$LOGS/dump.json" || { fail "policy"; return 1; }
    grep -q '"user_transport": "sctp://10.0.0.1:' "$LOGS/dump.json" || { fail "user transport"; return 1; }
    grep -q '"registration_life_ms": 90000' "$LOGS/dump.json" || { fail "lifetime (RSPLIB: ms)"; return 1; }
    terminal term "Hello RSerPool" "second line $$" || return 1
    echoed_by term 0x1a2b3c4d || { fail "not echoed by 0x1a2b3c4d"; return 1; }
    # Our announces go out as SCTP-only + SCTP-and-TCP; RSPLIB warns about (and drops) the
    # second kind (the warning names the TCP TLV at byte 24); nothing else of ours may
    # trouble its parser.
    if grep -a "Error while parsing" "$LOGS/rs1.log" "$LOGS/term.log" |
        grep -v "TLV at position 24, length 16): unrecognized parameter"; then
        fail "RSPLIB could not parse a message of ours other than the SCTP+TCP announce"; return 1
    fi
    say "PASS: RSPLIB PE 0x1a2b3c4d registered with us and served rspterminal"
}

# 1b. Registrar discovery by multicast announces, both ways: RSPLIB's PE and rspterminal
#    (no -registrar) find our registrar; our PE (no registrar given) finds rspregistrar,
#    whose announces carry no transport TLV (SCTP to the datagram's source address and
#    UDP source port, 127.0.0.1:3863; the PE's association then binds loopback too).
scenario_announce_interop() {
    our_registrar || return 1
    bg rs1 rspserver -echo -poolhandle=EchoPool -identifier=0x1a2b3c4d -loglevel=3 -logcolor=off
    wait_for 30 in_dump 0x1a2b3c4d || { log_tail rs1 20; fail "RSPLIB PE did not find our registrar"; return 1; }
    say "RSPLIB PE found our registrar by its announces"
    rm -f /tmp/t.in; mkfifo /tmp/t.in
    BG_IN=/tmp/t.in bg term rspterminal -poolhandle=EchoPool -loglevel=2 -logcolor=off
    exec 3>/tmp/t.in
    echo "found by announce" >&3
    wait_for 30 grep -q "from PE .*> found by announce" "$LOGS/term.log"; rc=$?
    exec 3>&-
    stop "$term_pid"
    grep -a "from PE" "$LOGS/term.log" | sed 's/\x1b\[[0-9;]*m//g'
    [ $rc = 0 ] || { log_tail term 20; fail "rspterminal did not find our registrar"; return 1; }
    stop "$rs1_pid"; stop "$reg_pid"
    wait_for 10 sh -c "! grep -q ' 3863 ' /proc/net/sctp/eps"

    rsplib_registrar || return 1
    bg pe1 ./rsp -v serve echo --listen sctp://0.0.0.0:0 --pe-id 0x5eed0001
    wait_for 40 in_hsdump 0x5eed0001 || { log_tail pe1 20; fail "our PE did not find rspregistrar"; return 1; }
    grep "registered" "$LOGS/pe1.log" | sed 's/\x1b\[[0-9;]*m//g'
    say "PASS: registrars found by announces both ways"
}

# 2. Our PE (rsp serve echo over SCTP) registers with RSPLIB's registrar; hsdump shows it
#    (SCTP + control channel); rspterminal through rspregistrar is answered by our PE.
scenario_our_pe_rsplib_registrar() {
    rsplib_registrar || return 1
    our_pe pe1 0x5eed0001 sctp://10.0.0.1:3863 || return 1
    wait_for 20 in_hsdump 0x5eed0001 || { fail "hsdump does not show 0x5eed0001"; return 1; }
    hsdump 127.0.0.1:9901 -logcolor=off 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -A5 'idx:#[0-9]*: [$]5eed0001' | tee "$LOGS/hsdump.txt"
    grep -q 'SCTP+CtrlCh' "$LOGS/hsdump.txt" || { fail "not SCTP + control channel"; return 1; }
    terminal term "Hello from RSPLIB" "line two $$" || return 1
    echoed_by term 0x5eed0001 || { fail "not echoed by our PE"; return 1; }
    grep -q "client connected (SCTP)" "$LOGS/pe1.log" || { fail "our PE saw no SCTP client"; return 1; }
    say "PASS: our PE registered with rspregistrar and served rspterminal"
}

# 3. Our PU (`rsp call`) through rspregistrar reaches RSPLIB's echo PE over SCTP; the PE it
#    uses is killed and the call continues on the second RSPLIB PE.
scenario_our_pu_rsplib_failover() {
    rsplib_registrar || return 1
    rsplib_pe rsA 0x0000000a
    rsplib_pe rsB 0x0000000b
    wait_for 20 in_hsdump 0x0000000a && wait_for 20 in_hsdump 0x0000000b ||
        { fail "RSPLIB PEs not registered"; return 1; }
    rm -f /tmp/call.in; mkfifo /tmp/call.in
    BG_IN=/tmp/call.in bg call ./rsp call EchoPool -r sctp://10.0.0.1:3863 --no-announces
    exec 4>/tmp/call.in
    echo "before the failure" >&4
    wait_for 20 grep -q "^before the failure" "$LOGS/call.log" || { exec 4>&-; log_tail call; fail "no echo"; return 1; }
    first=$(grep -o 'connected to PE 0x0000000[ab]' "$LOGS/call.log" | head -n1 | grep -o '0x.*')
    case $first in 0x0000000a) victim=$rsA_pid other=0x0000000b ;; 0x0000000b) victim=$rsB_pid other=0x0000000a ;;
        *) exec 4>&-; log_tail call; fail "unknown PE '$first'"; return 1 ;; esac
    say "call uses PE $first; killing it (SIGKILL, pid $victim)"
    kill -9 "$victim"
    sleep 0.5
    echo "after the failure" >&4
    wait_for 30 grep -q "^after the failure" "$LOGS/call.log"; rc=$?
    exec 4>&-
    wait_for 10 sh -c "! kill -0 $call_pid"
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/call.log" | grep -v DEBUG
    [ $rc = 0 ] || { fail "no echo after the failure"; return 1; }
    grep -q "PE $first failed" "$LOGS/call.log" || { fail "failure not reported"; return 1; }
    grep -q "connected to PE $other" "$LOGS/call.log" || { fail "did not move to $other"; return 1; }
    say "PASS: call moved from $first to $other"
}

# round_robin LABEL REGISTRAR ID1 ID2: handle resolutions asking for one PE alternate
# between ID1 and ID2, and `rsp call --per-request` is answered by both.
round_robin() {
    ./rsp resolve EchoPool -r "$2" -n 4 --items 1 --details | tee "$LOGS/resolve-$1.txt"
    firsts=$(grep '^resolution' "$LOGS/resolve-$1.txt" | sed 's/.*pes=//; s/,.*//' | tr '\n' ' ')
    set -- "$1" "$2" "$3" "$4" $firsts
    [ $# = 8 ] || { fail "expected 4 resolutions, got: $firsts"; return 1; }
    [ "$5" != "$6" ] && [ "$5" = "$7" ] && [ "$6" = "$8" ] || { fail "no alternation: $firsts"; return 1; }
    for id in "$3" "$4"; do
        echo "$firsts" | grep -q "$id" || { fail "$id never selected: $firsts"; return 1; }
    done
    printf 'one\ntwo\nthree\nfour\n' |
        ./rsp call EchoPool -r "$2" --no-announces --per-request >"$LOGS/rr-$1.out" 2>"$LOGS/rr-$1.err"
    grep 'answered' "$LOGS/rr-$1.err"
    for id in "$3" "$4"; do
        grep -q "PE $id answered" "$LOGS/rr-$1.err" || { cat "$LOGS/rr-$1.err"; fail "$id did not answer"; return 1; }
    done
    [ "$(grep -c . "$LOGS/rr-$1.out")" = 4 ] || { fail "not 4 replies"; return 1; }
}

# 3b. Our Ping Pong client (the session layer over SCTP) against RSPLIB's
#    `rspserver -pingpong -pppfailureafter=5` PEs through rspregistrar: each PE ends the
#    session after 5 Pongs; the client fails over (twice in 12 Pings, three PEs), echoes
#    the cookie (ASAP_COOKIE_ECHO on PPID 11), and the reply counter goes on by exactly
#    one. RSPLIB's server aborts a
#    session on anything but a Ping: no session heartbeat (--heartbeat 0); it sends no
#    acks, so the client's failover callback decides what to resend (Pings not answered).
scenario_pingpong_rsplib_pes() {
    rsplib_registrar || return 1
    for x in c d e; do
        bg "pp$x" rspserver -pingpong -pppfailureafter=5 -registrar=10.0.0.1:3863 \
            -identifier=0x0000000$x -loglevel=3 -logcolor=off
    done
    wait_for 20 in_hsdump 0x0000000c && wait_for 20 in_hsdump 0x0000000d &&
        wait_for 20 in_hsdump 0x0000000e ||
        { log_tail ppc; fail "RSPLIB ping pong PEs not registered"; return 1; }
    timeout 60 ./rsp pingpong -r sctp://10.0.0.1:3863 --no-announces -n 12 --interval 100ms \
        --heartbeat 0 >"$LOGS/pp.out" 2>"$LOGS/pp.err"; rc=$?
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/pp.out" "$LOGS/pp.err" | grep -v DEBUG
    [ $rc = 0 ] || { fail "rsp pingpong exited $rc"; return 1; }
    grep -q '^pings 12 answered 12 ' "$LOGS/pp.out" || { fail "not every Ping answered"; return 1; }
    grep -q ' reply-jumps 0 ' "$LOGS/pp.out" || { fail "the reply counter jumped"; return 1; }
    grep -q 'cookie echoed' "$LOGS/pp.err" || { fail "no failover with a cookie echo"; return 1; }
    say "PASS: our ping pong client failed over between RSPLIB PEs, reply counter continued"
}

# RSPLIB's pingpongclient against three of our ping pong PEs (SCTP, RSPLIB's registrar);
# the PE serving it is killed mid-run: the client fails over (its session layer echoes our
# cookie, "<PP-TD1>" + reply number) and the reply counter goes on without a gap.
scenario_pingpong_our_pes() {
    rsplib_registrar || return 1
    for x in 1 2 3; do
        bg "opp$x" ./rsp -v serve pingpong --pool PingPongPool --listen sctp://0.0.0.0:0 \
            -r sctp://10.0.0.1:3863 --pe-id "0x0000002$x" --no-announces
        wait_for 20 grep -q "^registered pool=PingPongPool pe=0x0000002$x" "$LOGS/opp$x.log" ||
            { log_tail "opp$x"; fail "our ping pong PE $x not registered"; return 1; }
    done
    wait_for 20 in_hsdump 0x00000021 && wait_for 20 in_hsdump 0x00000022 &&
        wait_for 20 in_hsdump 0x00000023 || { fail "our PEs not at rspregistrar"; return 1; }
    # (stdout to a file is block-buffered: the client's lines appear when it exits)
    bg ppc pingpongclient -poolhandle=PingPongPool -registrar=10.0.0.1:3863 -interval=100 \
        -loglevel=1 -logcolor=off
    # The PE the client talks to: the one with an association from a port other than the
    # registrar's.
    served=""
    for t in $(seq 1 50); do
        for x in 1 2 3; do
            port=$(sed -n "s/^listening pingpong sctp:.*:\([0-9]*\)$/\1/p" "$LOGS/opp$x.log" | head -1)
            [ -n "$port" ] || continue
            if awk -v p="$port" '$12 == p && $13 != 3863' /proc/net/sctp/assocs | grep -q .; then
                served=$x
            fi
        done
        [ -n "$served" ] && break
        sleep 0.2
    done
    [ -n "$served" ] || { cat /proc/net/sctp/assocs; fail "no association to our PEs"; return 1; }
    sleep 2
    say "killing our PE 0x0000002$served (pid $(eval echo \$opp${served}_pid)) under the client"
    kill -9 "$(eval echo \$opp${served}_pid)"
    sleep 6
    kill -INT "$ppc_pid"; wait_for 5 sh -c "! kill -0 $ppc_pid"
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/ppc.log" | grep -E 'Ack #|gap|FAILOVER' | tail -n 12
    before=$(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/ppc.log" | grep -c "Ack #.* from PE [$]0000002$served ")
    after=$(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/ppc.log" | grep "Ack #" | grep -vc "from PE [$]0000002$served ")
    [ "$before" -gt 0 ] || { fail "no Pong from the PE before it was killed"; return 1; }
    [ "$after" -gt 5 ] || { fail "no Pongs from another PE after the kill ($after)"; return 1; }
    if grep -q "Detected gap" "$LOGS/ppc.log"; then fail "the reply counter jumped"; return 1; fi
    say "PASS: pingpongclient: $before Pongs from PE $served, then $after from another, no gap"
}

# RSPLIB's calcappclient against two of our CalcApp PEs (SCTP, RSPLIB's registrar): its
# jobs (1,000,000 calculations at 1,000,000/s) complete.
scenario_calcapp_rsplib_client() {
    rsplib_registrar || return 1
    for x in 1 2; do
        bg "oca$x" ./rsp -v serve calcapp --pool CalcAppPool --listen sctp://0.0.0.0:0 \
            -r sctp://10.0.0.1:3863 --pe-id "0x0000003$x" --no-announces --calc-capacity 1000000
        wait_for 20 grep -q "^registered pool=CalcAppPool pe=0x0000003$x" "$LOGS/oca$x.log" ||
            { log_tail "oca$x"; fail "our CalcApp PE $x not registered"; return 1; }
    done
    wait_for 20 in_hsdump 0x00000031 && wait_for 20 in_hsdump 0x00000032 ||
        { fail "our CalcApp PEs not at rspregistrar"; return 1; }
    bg cac calcappclient -poolhandle=CalcAppPool -registrar=10.0.0.1:3863 -jobinterval=0.5 \
        -jobsize=1000000 -runtime=30 -vector=/tmp/cac.vec -scalar=/tmp/cac.sca
    wait_for 30 grep -q "^Job #2 completed" "$LOGS/cac.log" ||
        { log_tail cac 30; log_tail oca1; log_tail oca2; fail "RSPLIB's client completed fewer than 2 jobs"; return 1; }
    stop "$cac_pid"
    grep -E "^Job #[0-9]+ (accepted|completed|rejected)" "$LOGS/cac.log" | head -n 8
    say "PASS: calcappclient's jobs completed on our CalcApp PEs"
}

# Our CalcApp client against RSPLIB's `rspserver -calcapp` PEs: two jobs complete.
scenario_calcapp_rsplib_pes() {
    rsplib_registrar || return 1
    for x in 1 2; do
        bg "rca$x" rspserver -calcapp -poolhandle=CalcAppPool -registrar=10.0.0.1:3863 \
            -identifier="0x0000004$x" -loglevel=3 -logcolor=off
    done
    wait_for 20 in_hsdump 0x00000041 && wait_for 20 in_hsdump 0x00000042 ||
        { log_tail rca1; fail "RSPLIB CalcApp PEs not registered"; return 1; }
    timeout 60 ./rsp calcapp CalcAppPool -r sctp://10.0.0.1:3863 --no-announces -n 2 \
        --job-size 1000000 --heartbeat 0 >"$LOGS/ca.out" 2>"$LOGS/ca.err"; rc=$?
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/ca.out" "$LOGS/ca.err" | grep -v DEBUG | tail -n 10
    [ $rc = 0 ] || { fail "rsp calcapp exited $rc"; return 1; }
    [ "$(grep -c ' complete: ' "$LOGS/ca.out")" -ge 2 ] || { fail "fewer than 2 jobs completed"; return 1; }
    say "PASS: our CalcApp client's jobs completed on RSPLIB's PEs"
}

# 4. One RSPLIB PE and one of ours in EchoPool, on our registrar and then on RSPLIB's:
#    round robin alternates between them (registrar selections and answering servers).
scenario_mixed_pool() {
    say "--- on our registrar"
    our_registrar --announce=false || return 1
    rsplib_pe rs1 0x1a2b3c4d
    our_pe pe1 0x5eed0001 sctp://10.0.0.1:3863 || return 1
    wait_for 20 in_dump 0x1a2b3c4d || { fail "RSPLIB PE not registered"; return 1; }
    ./rsp dump --admin 127.0.0.1:9990
    round_robin ours sctp://10.0.0.1:3863 0x1a2b3c4d 0x5eed0001 || return 1
    stop "$pe1_pid"; stop "$rs1_pid"; stop "$reg_pid"
    wait_for 10 sh -c "! grep -q ' 3863 ' /proc/net/sctp/eps"
    say "--- on RSPLIB's registrar"
    rsplib_registrar || return 1
    rsplib_pe rs2 0x1a2b3c4e
    our_pe pe2 0x5eed0002 sctp://10.0.0.1:3863 || return 1
    wait_for 20 in_hsdump 0x1a2b3c4e && wait_for 20 in_hsdump 0x5eed0002 || { fail "not both in hsdump"; return 1; }
    round_robin theirs sctp://10.0.0.1:3863 0x1a2b3c4e 0x5eed0002 || return 1
    say "PASS: round robin alternates in a mixed pool on both registrars"
}

# 5. A frozen (SIGSTOP) RSPLIB PE is removed by our registrar after the keep-alive timeout;
#    a frozen PE of ours is removed by RSPLIB's registrar.
scenario_keepalive_interop() {
    our_registrar --announce=false || return 1
    rsplib_pe rs1 0x1a2b3c4d
    wait_for 20 in_dump 0x1a2b3c4d || { fail "RSPLIB PE not registered"; return 1; }
    wait_for 10 grep -q 'Home registrar is' "$LOGS/rs1.log" || { fail "RSPLIB PE never saw our keep-alive"; return 1; }
    t0=$(uptime_s); kill -STOP "$rs1_pid"; say "RSPLIB PE frozen"
    wait_for 15 sh -c "! ./rsp dump --admin 127.0.0.1:9990 | grep -q 0x1a2b3c4d"; rc=$?
    say "RSPLIB PE gone from our registrar after $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b-a}')s"
    kill -CONT "$rs1_pid"
    grep "PE removed" "$LOGS/reg.log"
    [ $rc = 0 ] || { fail "frozen RSPLIB PE still registered"; return 1; }
    grep -q "pe=0x1a2b3c4d reason=keepalive-timeout" "$LOGS/reg.log" || { fail "not removed by keep-alive"; return 1; }
    stop "$rs1_pid"; stop "$reg_pid"
    wait_for 10 sh -c "! grep -q ' 3863 ' /proc/net/sctp/eps"

    rsplib_registrar || return 1
    our_pe pe1 0x5eed0001 sctp://10.0.0.1:3863 || return 1
    wait_for 20 in_hsdump 0x5eed0001 || { fail "our PE not in hsdump"; return 1; }
    t0=$(uptime_s); kill -STOP "$pe1_pid"; say "our PE frozen"
    wait_for 15 sh -c "! hsdump 127.0.0.1:9901 -logcolor=off 2>&1 | grep -q 'idx:#[0-9]*: [$]5eed0001 '"; rc=$?
    say "our PE gone from rspregistrar after $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b-a}')s"
    kill -CONT "$pe1_pid"
    # Sanity: hsdump itself still works (the PE is gone, not the registrar).
    hsdump 127.0.0.1:9901 -logcolor=off 2>&1 | grep -q 'Handlespace' || { fail "hsdump broken"; return 1; }
    [ $rc = 0 ] || { fail "frozen PE of ours still registered at rspregistrar"; return 1; }
    # Once thawed, our PE registers again.
    wait_for 20 in_hsdump 0x5eed0001 || { log_tail pe1; fail "our PE did not come back"; return 1; }
    say "PASS: keep-alive timeouts remove frozen PEs both ways"
}

# 6. Our registrar over SCTP and TCP at once: an RSPLIB PE (SCTP) and `rsp serve` registered
#    over TCP in one pool; PUs over SCTP (rspterminal, rsp call) and TCP (rsp call, resolve)
#    get both.
scenario_sctp_and_tcp() {
    our_registrar --announce=false || return 1
    rsplib_pe rs1 0x1a2b3c4d
    our_pe pe1 0x5eed0001 tcp://127.0.0.1:3863 || return 1
    wait_for 20 in_dump 0x1a2b3c4d || { fail "RSPLIB PE not registered"; return 1; }
    ./rsp dump --admin 127.0.0.1:9990
    for r in sctp://10.0.0.1:3863 tcp://127.0.0.1:3863; do
        ./rsp resolve EchoPool -r $r --items 2 | tee "$LOGS/both.txt"
        grep -q 'pes=.*0x1a2b3c4d' "$LOGS/both.txt" && grep -q 'pes=.*0x5eed0001' "$LOGS/both.txt" ||
            { fail "$r does not resolve both PEs"; return 1; }
    done
    round_robin tcp tcp://127.0.0.1:3863 0x1a2b3c4d 0x5eed0001 || return 1
    round_robin sctp sctp://10.0.0.1:3863 0x1a2b3c4d 0x5eed0001 || return 1
    terminal term "over SCTP" || return 1
    # Our PE registered over TCP: its ASAP transport in the handle resolution response is a
    # TCP transport TLV. rspterminal (items = 1, round robin) must reach it too.
    n=0
    until rterminal tterm$n 10.0.0.1:3863 "tcp asap $n" >/dev/null 2>&1 && echoed_by tterm$n 0x5eed0001; do
        n=$((n + 1)); [ $n -lt 4 ] || { log_tail tterm$n 20; fail "rspterminal never reached the PE registered over TCP"; return 1; }
    done
    say "rspterminal reached our PE registered over TCP (ASAP transport tcp://…) on attempt $((n + 1))"
    say "PASS: one pool served to PUs over SCTP and TCP"
}

# Our registrar over SCTP (multi-homed) and TCP: RSPLIB's rspserver registers a PE over
# SCTP and answers our keep-alives; our own PE registers over SCTP; our PU resolves over
# TCP; RSPLIB's rspterminal resolves at our registrar over SCTP; a killed RSPLIB PE is
# removed.
scenario_rsp_registrar_sctp() {
    dump() { ./rsp dump --admin 127.0.0.1:9990 --json 2>/dev/null; }
    has_pe() { dump | grep -q "\"$1\""; }
    ./rsp registrar --listen sctp://127.0.0.1,10.0.0.1:3863 --listen tcp://127.0.0.1:3863 \
        --admin 127.0.0.1:9990 --announce=false --keepalive-interval 1s --keepalive-timeout 2s \
        -v >"$LOGS/rsp-registrar.out" 2>&1 &
    rp=$!
    if ! wait_for 20 grep -q ' 3863 ' /proc/net/sctp/eps; then
        echo "rsp registrar did not come up:"; cat "$LOGS/rsp-registrar.out"; stop $rp; return 1
    fi
    head -n 1 "$LOGS/rsp-registrar.out"
    rspserver -echo -poolhandle=RspEchoPool -registrar=127.0.0.1:3863 -identifier=0x2002 \
        -loglevel=2 -logcolor=off >"$LOGS/rspserver.out" 2>&1 &
    xp=$!
    ./rsp serve echo -r sctp://127.0.0.1:3863 --no-announces --listen 127.0.0.1:7001 \
        --pe-id 0x1001 >"$LOGS/rsp-serve.out" 2>&1 &
    sp=$!
    rc=0
    wait_for 30 has_pe 0x00002002 || { echo "RSPLIB PE did not register"; rc=1; }
    wait_for 30 has_pe 0x00001001 || { echo "our PE did not register over SCTP"; rc=1; }
    ./rsp dump --admin 127.0.0.1:9990
    out=$(printf 'ping-over-tcp\n' | ./rsp call EchoPool -r tcp://127.0.0.1:3863 --no-announces --per-request 2>&1)
    echo "$out"
    echo "$out" | grep -q '^ping-over-tcp$' || { echo "rsp call got no echo"; rc=1; }
    (echo hello-rsplib; sleep 3) | timeout 10 rspterminal -registrar=127.0.0.1:3863 \
        -poolhandle=RspEchoPool -loglevel=2 -logcolor=off >"$LOGS/rspterminal.out" 2>&1
    echo "--- rspterminal output"; tail -n 15 "$LOGS/rspterminal.out"
    grep -q hello-rsplib "$LOGS/rspterminal.out" || { echo "rspterminal got no echo"; rc=1; }
    # Keep-alives every second: the RSPLIB PE acknowledges them and stays.
    sleep 4
    has_pe 0x00002002 || { echo "RSPLIB PE lost despite keep-alives"; rc=1; }
    kill -9 $xp
    wait_for 15 sh -c "! ./rsp dump --admin 127.0.0.1:9990 --json | grep -q 0x00002002" \
        || { echo "killed RSPLIB PE not removed"; rc=1; }
    stop $sp
    wait_for 10 sh -c "! ./rsp dump --admin 127.0.0.1:9990 --json | grep -q 0x00001001" \
        || { echo "our PE did not deregister"; rc=1; }
    stop $rp
    echo "--- rsp registrar log (last 15 lines)"; tail -n 15 "$LOGS/rsp-registrar.out"
    echo "--- rspserver output (last 10 lines)"; tail -n 10 "$LOGS/rspserver.out"
    return $rc
}

# ---- ENRP interop: our registrar and rspregistrar as peers ------------------------------
# Both on this host: rspregistrar on the fixed ports (ASAP 3863, ENRP 9901; its tools need
# them), ours on ASAP 3864 (SCTP + TCP), ENRP sctp 9902, admin 9990. Each names the other
# as a static peer (RSPLIB: -peer=, undocumented in its usage line); fast ENRP timers on
# both (RSPLIB's minimum is 1 s). PEs and PUs use 10.0.0.1. Our keep-alive timeout is 3 s:
# the keep-alive that claims a taken-over PE also has to open the association to it, and
# on the emulated CPU an RSPLIB PE's ACK took ~1.1 s.

# Our registrar peering with rspregistrar; extra flags appended.
our_peer_registrar() {
    : >"$LOGS/reg.log"   # not the last scenario's start-up line
    bg reg ./rsp registrar --log-level info,rsp::registrar=debug \
        --listen sctp://0.0.0.0:3864 --listen tcp://0.0.0.0:3864 --enrp-listen sctp://0.0.0.0:9902 \
        --peer sctp://10.0.0.1:9901 --admin 127.0.0.1:9990 --announce=false \
        --keepalive-interval 1s --keepalive-timeout 3s --heartbeat-cycle 1s \
        --max-time-last-heard 2s --max-time-no-response 1s --mentor-discovery-timeout 2s \
        --takeover-expiry 2s "$@"
    wait_for 20 grep -q '^rsp registrar:' "$LOGS/reg.log" || { log_tail reg; return 1; }
    say "$(grep '^rsp registrar:' "$LOGS/reg.log")"
    our_id=$(grep -o 'server id 0x[0-9a-f]*' "$LOGS/reg.log" | head -n1 | grep -o '0x.*')
}
# rspregistrar peering with ours.
rsplib_peer_registrar() {
    # (its stdout, with the banner naming its server ID, is block-buffered: give the ID)
    rsplib_id=0x7e570001
    rsplib_registrar -peer=10.0.0.1:9902 -peerheartbeatcycle=1000 -peermaxtimelastheard=2000 \
        -peermaxtimenoresponse=1000 -mentordiscoverytimeout=2000 -takeoverexpiryinterval=2000 \
        -identifier=$rsplib_id -loglevel=3 "$@" || return 1
    say "rspregistrar server id $rsplib_id"
}
# our_dump_json: our registrar's admin dump as JSON.
our_dump_json() { ./rsp dump --admin 127.0.0.1:9990 --json 2>/dev/null; }
# peer_active ID: our registrar lists peer ID as active.
peer_active() { our_dump_json | tr -d ' \n' | grep -q "\"server_id\":\"$1\",[^}]*\"state\":\"active\""; }
# in_our_dump ID: PE ID in our registrar's handlespace.
in_our_dump() { our_dump_json | grep -q "\"id\": \"$1\""; }
# home_in_our_dump ID HOME: our registrar shows PE ID with home registrar HOME.
home_in_our_dump() { our_dump_json | tr -d ' \n' | grep -q "\"id\":\"$1\",\"home\":\"$2\""; }
# hsdump_of ADDR: RSPLIB's hsdump of the registrar at ADDR (colour codes stripped).
hsdump_of() { hsdump "$1" -logcolor=off 2>&1 | sed 's/\x1b\[[0-9;]*m//g'; }
# pe_in_hsdump ADDR ID
pe_in_hsdump() { hsdump_of "$1" | grep -q "idx:#[0-9]*: [$]${2#0x} "; }
# rterminal NAME REGISTRAR LINE: rspterminal through REGISTRAR; waits for the echo.
rterminal() {
    name=$1 reg=$2 line=$3
    fifo=/tmp/$name.in
    rm -f "$fifo"; mkfifo "$fifo"
    BG_IN=$fifo bg "$name" rspterminal -poolhandle=EchoPool -registrar="$reg" -loglevel=2 -logcolor=off
    exec 3>"$fifo"
    echo "$line" >&3
    wait_for 20 grep -q "from PE .*> $line" "$LOGS/$name.log"; ok=$?
    exec 3>&-
    eval "stop \$${name}_pid"
    grep -a "from PE" "$LOGS/$name.log" | sed 's/\x1b\[[0-9;]*m//g'
    [ $ok = 0 ] || { log_tail "$name" 20; fail "rspterminal via $reg got no echo"; }
}
# cross_checks: with both registrars up and peered, a PE of ours registered at ours and an
# RSPLIB PE registered at rspregistrar are each resolvable at the other registrar; hsdump
# reads our handlespace, `rsp dump --enrp` reads rspregistrar's.
cross_checks() {
    our_pe pe1 0x5eed0001 sctp://10.0.0.1:3864 || return 1
    rsplib_pe rs1 0x1a2b3c4d
    wait_for 20 in_our_dump 0x1a2b3c4d || { log_tail rreg 30; log_tail reg 30; fail "RSPLIB PE not replicated to ours"; return 1; }
    wait_for 20 pe_in_hsdump 127.0.0.1:9901 0x5eed0001 || { log_tail rreg 30; log_tail reg 30; fail "our PE not replicated to rspregistrar"; return 1; }
    say "both PEs in both handlespaces"
    ./rsp dump --admin 127.0.0.1:9990
    # (b) rspterminal through rspregistrar reaches our PE (round robin: ask until it does).
    n=0
    until rterminal term$n 10.0.0.1:3863 "via rsplib $n" >/dev/null 2>&1 && echoed_by term$n 0x5eed0001; do
        n=$((n + 1)); [ $n -lt 6 ] || { log_tail term$n; fail "rspterminal via rspregistrar never reached our PE"; return 1; }
    done
    say "rspterminal via rspregistrar echoed by our PE 0x5eed0001 (attempt $((n + 1)))"
    # ... and our PU through our registrar reaches the RSPLIB PE.
    printf 'a\nb\nc\nd\n' | ./rsp call EchoPool -r sctp://10.0.0.1:3864 --no-announces --per-request \
        >"$LOGS/call.out" 2>"$LOGS/call.err"
    grep answered "$LOGS/call.err"
    grep -q "PE 0x1a2b3c4d answered" "$LOGS/call.err" || { fail "rsp call via ours never reached the RSPLIB PE"; return 1; }
    # (c) hsdump reads our handlespace over ENRP.
    hsdump_of 10.0.0.1:9902 >"$LOGS/hsdump-ours.txt"
    grep -E 'idx:#|Got|Failed' "$LOGS/hsdump-ours.txt"
    grep -q 'idx:#[0-9]*: [$]5eed0001 ' "$LOGS/hsdump-ours.txt" && grep -q 'idx:#[0-9]*: [$]1a2b3c4d ' "$LOGS/hsdump-ours.txt" ||
        { cat "$LOGS/hsdump-ours.txt"; fail "hsdump does not read both PEs from our registrar"; return 1; }
    # (d) rsp dump --enrp reads rspregistrar's handlespace.
    ./rsp dump --enrp sctp://10.0.0.1:9901 | tee "$LOGS/enrp-dump.txt" || { fail "rsp dump --enrp failed"; return 1; }
    grep -q 0x5eed0001 "$LOGS/enrp-dump.txt" && grep -q 0x1a2b3c4d "$LOGS/enrp-dump.txt" ||
        { fail "rsp dump --enrp does not show both PEs"; return 1; }
}

# (a) Our registrar first, then rspregistrar: they peer; then the cross checks.
scenario_enrp_ours_first() {
    our_peer_registrar || return 1
    rsplib_peer_registrar || return 1
    wait_for 20 peer_active "$rsplib_id" || { ./rsp dump --admin 127.0.0.1:9990; log_tail reg 30; log_tail rreg 30; fail "rspregistrar not an active peer of ours"; return 1; }
    say "rspregistrar $rsplib_id is an active peer of ours"
    cross_checks || return 1
    say "PASS: peered (ours first); PEs resolvable across; hsdump and rsp dump --enrp read the other"
}

# (a) rspregistrar first (with an RSPLIB PE already registered), then ours: ours downloads
# the handlespace from it at start-up, they peer; then the cross checks.
scenario_enrp_rsplib_first() {
    rsplib_peer_registrar || return 1
    rsplib_pe rs0 0x1a2b3c00
    wait_for 20 pe_in_hsdump 127.0.0.1:9901 0x1a2b3c00 || { fail "RSPLIB PE not at rspregistrar"; return 1; }
    our_peer_registrar || return 1
    wait_for 20 peer_active "$rsplib_id" || { ./rsp dump --admin 127.0.0.1:9990; log_tail reg 30; log_tail rreg 30; fail "rspregistrar not an active peer of ours"; return 1; }
    wait_for 20 home_in_our_dump 0x1a2b3c00 "$rsplib_id" || { ./rsp dump --admin 127.0.0.1:9990; log_tail reg 30; fail "PE registered before we started not downloaded"; return 1; }
    say "downloaded 0x1a2b3c00 (home $rsplib_id) at start-up"
    cross_checks || return 1
    say "PASS: peered (rspregistrar first); start-up download; PEs resolvable across"
}

# (e) Our registrar dies: our PE ends up at rspregistrar. RSPLIB's takeover of a dead peer
# completes only on INIT_TAKEOVER_ACKs; with no third registrar none come and its takeover
# expires ("0 outstanding acknowledgements"). So the PE knows both registrars and hunts
# to rspregistrar when its home dies (the way the PE reaches a new home without a
# takeover); should RSPLIB claim it first (keep-alive with H = 1 on the PE's SCTP control
# endpoint), the log says "new home registrar". Either way hsdump shows rspregistrar as
# its home and rspterminal through rspregistrar reaches it.
scenario_enrp_takeover_by_rsplib() {
    our_peer_registrar || return 1
    # The PE hunts in random order: start it while only ours is up, so ours is its home.
    bg pe1 ./rsp -v serve echo --listen sctp://0.0.0.0:0 -r sctp://10.0.0.1:3864 \
        -r sctp://10.0.0.1:3863 --pe-id 0x5eed0001 --no-announces
    wait_for 20 grep -q "^registered pool=EchoPool pe=0x5eed0001" "$LOGS/pe1.log" || { log_tail pe1; return 1; }
    wait_for 20 home_in_our_dump 0x5eed0001 "$our_id" || { fail "our PE not registered at ours"; return 1; }
    rsplib_peer_registrar || return 1
    wait_for 20 peer_active "$rsplib_id" || { fail "not peered"; return 1; }
    wait_for 20 pe_in_hsdump 127.0.0.1:9901 0x5eed0001 || { fail "our PE not replicated"; return 1; }
    hsdump_of 127.0.0.1:9901 | grep -A1 'idx:#[0-9]*: [$]5eed0001 '
    # Each hsdump is a peer of rspregistrar for a few seconds (and would be waited for in
    # a takeover): let those entries expire first.
    sleep 8
    say "killing our registrar (SIGKILL)"
    kill -9 "$reg_pid"
    at_rsplib() { hsdump_of 127.0.0.1:9901 | grep -A1 'idx:#[0-9]*: [$]5eed0001 ' | grep -q "home=[$]${rsplib_id#0x}"; }
    wait_for 40 at_rsplib; rc=$?
    hsdump_of 127.0.0.1:9901 | grep -A1 'idx:#[0-9]*: [$]5eed0001 '
    grep -a "akeover" "$LOGS/rreg.log" | tail -n 3
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/pe1.log" | grep -a "new home registrar\|INFO rserpool::pe: registered\|no registrar" | tail -n 4
    [ $rc = 0 ] || { log_tail rreg 30; log_tail pe1 20; fail "our PE did not end up at rspregistrar"; return 1; }
    if grep -q "new home registrar home=$rsplib_id" "$LOGS/pe1.log"; then how="taken over (keep-alive with H = 1)"; else how="re-registered after its home died"; fi
    rterminal term 10.0.0.1:3863 "after takeover" || return 1
    echoed_by term 0x5eed0001 || { fail "not echoed by our PE"; return 1; }
    say "PASS: our PE is at rspregistrar after our registrar died: $how"
}

# (e) rspregistrar dies: our registrar takes its PE over (our dump shows it with our
# server ID as home; the RSPLIB PE acknowledges our keep-alive with H = 1).
scenario_enrp_takeover_by_ours() {
    rsplib_peer_registrar || return 1
    our_peer_registrar || return 1
    wait_for 20 peer_active "$rsplib_id" || { fail "not peered"; return 1; }
    rsplib_pe rs1 0x1a2b3c4d
    wait_for 20 home_in_our_dump 0x1a2b3c4d "$rsplib_id" || { fail "RSPLIB PE not replicated"; return 1; }
    say "killing rspregistrar (SIGKILL)"
    kill -9 "$rreg_pid"
    wait_for 30 home_in_our_dump 0x1a2b3c4d "$our_id"; rc=$?
    ./rsp dump --admin 127.0.0.1:9990
    grep -a "takeover\|took over\|taking over" "$LOGS/reg.log" | tail -n 5
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/rs1.log" | grep -i "home registrar" | tail -n 3
    [ $rc = 0 ] || { log_tail reg 40; fail "our registrar did not take the RSPLIB PE over"; return 1; }
    # The PE answers our keep-alives: still there after several keep-alive periods.
    sleep 4
    in_our_dump 0x1a2b3c4d || { log_tail reg 30; log_tail rs1 30; fail "taken-over RSPLIB PE lost (keep-alive with H = 1 not answered?)"; return 1; }
    say "PASS: our registrar took over the RSPLIB PE"
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
    : >"$PIDS"
    timeout -s KILL "$SCENARIO_TIMEOUT" sh "$0" --one "$s" >"$LOGS/$s.log" 2>&1
    rc=$?
    # Stop what the scenario left running (also after a timeout), so ports are free.
    for p in $(cat "$PIDS"); do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
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
