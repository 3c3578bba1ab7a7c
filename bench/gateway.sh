#!/usr/bin/env bash
# The gateway benchmark: ab on loopback, 50 concurrent clients, 1 KiB and 100 KiB bodies,
# IPv4 and IPv6, through
#   direct         ab straight to one PE (no balancing)
#   haproxy tcp    HAProxy (Debian package), mode tcp, round robin over the same 3 PEs
#   haproxy http   HAProxy, mode http (keep-alive to the PEs), round robin
#   rsp tcp        rsp gateway, TCP mode (a PE per client connection, pool policy rr),
#                  bytes copied with tokio::io::copy_bidirectional
#   rsp tcp splice the same with --splice (splice(2), kernel to kernel)
#   rsp http       rsp gateway --http (a PE per request, kept-alive PE connections)
# The PEs are `rsp serve http` (3 per body size and address family, registered in one
# pool each). ab opens one connection per request (HTTP/1.0, no -k), as a browser-less
# client would. Prints a markdown table: requests/s and mean latency (ms) per cell.
#
# Each cell is the median (by requests/s) of REPEAT runs: the machine is shared. The rows of
# one cell run one after the other (interleaved), so they see the same outside load.
# ROUNDS>1 runs the rows again and again (back to back, so rows compared are measured under
# the same outside load) and prints one table per round; ROWS picks rows by name, e.g.
# ROWS="haproxy http,rsp http".
# Usage: bench/gateway.sh   (N=20000 C=50 REPEAT=3 ROUNDS=1 BASE=27000 RSP=target/release/rsp)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
REPEAT=${REPEAT:-3}
ROUNDS=${ROUNDS:-1}
ROWS=${ROWS:-direct,haproxy tcp,haproxy http,rsp tcp,rsp tcp splice,rsp http}
C=${C:-50}
BASE=${BASE:-27000}
RSP=${RSP:-target/release/rsp}
for t in ab haproxy; do
  command -v "$t" >/dev/null 2>&1 || { echo "bench/gateway.sh needs $t (apache2-utils, haproxy)" >&2; exit 2; }
done
[ -x "$RSP" ] || cargo build --release -p rsp
ulimit -n 65536 2>/dev/null || true

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

REG="tcp://127.0.0.1:$BASE"
"$RSP" registrar --listen "$REG" --admin off --announce=false >"$work/reg.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "^rsp registrar:" "$work/reg.out" && break; sleep 0.1; done

addr() { if [ "$1" = 4 ]; then echo "127.0.0.1:$2"; else echo "[::1]:$2"; fi; }
sizes=(1024 102400)
fams=(4 6)
# Ports: PEs BASE+100.., HAProxy tcp BASE+200.., HAProxy http BASE+300.., rsp tcp BASE+400..,
# rsp http BASE+500.., rsp tcp splice BASE+600..; one block of 10 per (size, family).
slot() { local s=$1 f=$2; echo $(( (s == 1024 ? 0 : 2) + (f == 4 ? 0 : 1) )); }

hacfg="$work/haproxy.cfg"
cat >"$hacfg" <<CFG
global
  maxconn 8000
  nbthread 2
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
CFG
gw_tcp_maps=()
gw_http_maps=()
gw_splice_maps=()
for s in "${sizes[@]}"; do
  for f in "${fams[@]}"; do
    k=$(slot "$s" "$f")
    servers=""
    for i in 1 2 3; do
      p=$((BASE + 100 + k * 10 + i))
      "$RSP" serve http -r "$REG" --no-announces --pool "W${s}v$f" --listen "$(addr "$f" "$p")" \
        --body-size "$s" >"$work/pe-$s-$f-$i.out" 2>&1 &
      pids+=($!)
      servers+="  server s$i $(addr "$f" "$p")"$'\n'
    done
    for mode in tcp http; do
      if [ "$mode" = tcp ]; then fp=$((BASE + 200 + k)); else fp=$((BASE + 300 + k)); fi
      cat >>"$hacfg" <<CFG
frontend f_${mode}_${s}_$f
  mode $mode
  bind $(addr "$f" "$fp")
  default_backend b_${mode}_${s}_$f
backend b_${mode}_${s}_$f
  mode $mode
  balance roundrobin
$( [ "$mode" = http ] && echo "  http-reuse always" )
$servers
CFG
    done
    gw_tcp_maps+=(--map "tcp://$(addr "$f" $((BASE + 400 + k)))=W${s}v$f")
    gw_http_maps+=(--map "tcp://$(addr "$f" $((BASE + 500 + k)))=W${s}v$f")
    gw_splice_maps+=(--map "tcp://$(addr "$f" $((BASE + 600 + k)))=W${s}v$f")
  done
done
for _ in $(seq 200); do
  [ "$(cat "$work"/pe-*.out | grep -c '^registered ')" -ge 12 ] && break
  sleep 0.1
done
haproxy -q -f "$hacfg" >"$work/haproxy.out" 2>&1 &
pids+=($!)
"$RSP" gateway -r "$REG" --no-announces "${gw_tcp_maps[@]}" >"$work/gw-tcp.out" 2>&1 &
pids+=($!)
"$RSP" gateway -r "$REG" --no-announces --http "${gw_http_maps[@]}" >"$work/gw-http.out" 2>&1 &
pids+=($!)
"$RSP" gateway -r "$REG" --no-announces --splice "${gw_splice_maps[@]}" >"$work/gw-splice.out" 2>&1 &
pids+=($!)
sleep 2

# ab URL -> "req/s ms failed"
run_ab() {
  { ab -q -n "$N" -c "$C" "http://$1/" 2>&1 || true; } | awk '
    /^Requests per second:/ { rps = $4 }
    /^Time per request:/ && !t { ms = $4; t = 1 }
    /^Failed requests:/ { failed = $3 }
    END { printf "%s %s %s\n", rps != "" ? rps : "-", ms != "" ? ms : "-", failed != "" ? failed : "-" }'
}

port_of() { # row size family
  local k; k=$(slot "$2" "$3")
  case "$1" in
    direct) echo $((BASE + 100 + k * 10 + 1)) ;;
    "haproxy tcp") echo $((BASE + 200 + k)) ;;
    "haproxy http") echo $((BASE + 300 + k)) ;;
    "rsp tcp") echo $((BASE + 400 + k)) ;;
    "rsp http") echo $((BASE + 500 + k)) ;;
    "rsp tcp splice") echo $((BASE + 600 + k)) ;;
  esac
}
IFS=, read -r -a rows <<<"$ROWS"
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" = 1 ] || echo "round $round"
  # Cell by cell, the rows one after the other within each repetition, so that every row
  # of a cell is measured under the same outside load.
  declare -A res=()
  for s in "${sizes[@]}"; do
    for f in "${fams[@]}"; do
      for _ in $(seq "$REPEAT"); do
        for row in "${rows[@]}"; do
          res["$row|$s|$f"]+="$(run_ab "$(addr "$f" "$(port_of "$row" "$s" "$f")")")"$'\n'
        done
      done
    done
  done
  printf '| path | 1 KiB IPv4 req/s | ms | 1 KiB IPv6 req/s | ms | 100 KiB IPv4 req/s | ms | 100 KiB IPv6 req/s | ms |\n'
  printf '|---|---|---|---|---|---|---|---|---|\n'
  for row in "${rows[@]}"; do
    line="| $row |"
    for s in "${sizes[@]}"; do
      for f in "${fams[@]}"; do
        runs=$(printf '%s' "${res["$row|$s|$f"]}" | sort -n -k1,1)
        read -r rps ms failed < <(echo "$runs" | sed -n "$(( (REPEAT + 1) / 2 ))p")
        [ "$failed" = 0 ] || rps="$rps (failed $failed)"
        line+=" $rps | $ms |"
      done
    done
    echo "$line"
  done
  unset res
done
echo
echo "ab -n $N -c $C, one connection per request, median of $REPEAT runs; $(nproc) cores shared by ab, the proxy and the PEs (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))."

