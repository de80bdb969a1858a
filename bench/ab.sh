#!/usr/bin/env bash
# Interleaved A/B of a proxy's CPU cost: several Switchyard binaries (and HAProxy) in front of
# one server, a load generator against each in turn (wrk for `mode http` requests, or
# `switchyard-bench connrate` for short TCP connections), the proxy's CPU time per request or
# connection from /proc/PID/stat. For changes of a few percent, which the full suite (bench/run.sh) cannot
# resolve on a noisy machine: everything is pinned, runs are short and many, and each round
# visits every proxy once, so that drift hits them alike.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/ab.sh [-w http|conn] [-s SECONDS] [-r ROUNDS] [-t THREADS] [--no-haproxy] NAME=BINARY [NAME=BINARY ...]

  -w WORKLOAD   http: `mode http` requests, wrk -t 2 -c 32 over keep-alive connections (default)
                conn: short TCP connections through `mode tcp` (connect, 64-byte echo, close;
                switchyard-bench connrate -c 32 --sources 8)
  -s SECONDS    length of each run (default 5)
  -r ROUNDS     rounds; each runs the load generator once against every proxy (default 5)
  -t THREADS    nbthread of every proxy (default 1)
  --no-haproxy  compare the given binaries only

Each binary runs `nbthread THREADS` pinned to the last THREADS CPUs; the load generator and
the server (switchyard-bench serve) run on the other CPUs. When THREADS is the number of
CPUs or more, nothing is pinned: proxies, load generator and server share every CPU, as they
would on a host where the proxy is not given cores of its own. Prints, per proxy, the median
and range of requests (or connections) per second, of CPU, user and system time per request,
and of the time the machine's CPUs sat idle during the runs (a proxy that makes its peers
wait for it leaves CPU idle even when it spends no more CPU itself).
Needs wrk, python3 and a release build of switchyard-bench; HAProxy unless --no-haproxy.
EOF
}

SECONDS_PER_RUN=5
ROUNDS=5
THREADS=1
HAPROXY=1
WORKLOAD=http
declare -a NAMES=() BINS=()
while (($#)); do
    case "$1" in
        -w) WORKLOAD="$2"; shift 2 ;;
        -s) SECONDS_PER_RUN="$2"; shift 2 ;;
        -r) ROUNDS="$2"; shift 2 ;;
        -t) THREADS="$2"; shift 2 ;;
        --no-haproxy) HAPROXY=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *=*) NAMES+=("${1%%=*}"); BINS+=("${1#*=}"); shift ;;
        *) usage >&2; exit 2 ;;
    esac
done
((${#NAMES[@]} > 0)) || { usage >&2; exit 2; }
die() { echo "ab.sh: $*" >&2; exit 1; }
for bin in "${BINS[@]}"; do [[ -x "$bin" ]] || die "$bin is not an executable"; done
[[ "$WORKLOAD" == http || "$WORKLOAD" == conn ]] || die "-w wants http or conn, not '$WORKLOAD'"
[[ "$WORKLOAD" == conn ]] || command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
((HAPROXY == 0)) || command -v haproxy >/dev/null || die "haproxy is missing (or pass --no-haproxy)"

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_BIN="${SWITCHYARD_BENCH_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/switchyard-bench}"
[[ -x "$BENCH_BIN" ]] || die "$BENCH_BIN missing: cargo build --release -p switchyard-bench"

[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "-t wants a positive thread count, not '$THREADS'"
NCPU="$(nproc)"
if ((THREADS >= NCPU)); then
    PROXY_CPUS="0-$((NCPU - 1))"
    LOADGEN_CPUS="$PROXY_CPUS"
    SERVER_THREADS="$NCPU"
else
    PROXY_CPUS="$((NCPU - THREADS))-$((NCPU - 1))"
    LOADGEN_CPUS="0-$((NCPU - THREADS - 1))"
    SERVER_THREADS=$((NCPU - THREADS))
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

HTTP_PORT="$(free_port)"
ECHO_PORT="$(free_port)"
taskset -c "$LOADGEN_CPUS" "$BENCH_BIN" serve --echo "127.0.0.1:$ECHO_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --threads "$SERVER_THREADS" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_port "$HTTP_PORT" || die "the HTTP server did not start: $(cat "$WORK/server.log")"

config() { # port -> the configuration every proxy gets, but for its bind port
    local mode=http server_port="$HTTP_PORT"
    [[ "$WORKLOAD" == conn ]] && mode=tcp server_port="$ECHO_PORT"
    cat <<EOF
global
    maxconn 4096
    nbthread $THREADS
defaults
    mode $mode
    maxconn 4096
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen ab_$mode
    bind 127.0.0.1:$1
    server s1 127.0.0.1:$server_port
EOF
}

declare -a PORTS=() PROXY_PIDS=()
start() { # name command...
    local name="$1" port
    shift
    port="$(free_port)"
    config "$port" >"$WORK/$name.cfg"
    SWITCHYARD_LOG=error taskset -c "$PROXY_CPUS" "$@" -f "$WORK/$name.cfg" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    PROXY_PIDS+=($!)
    PORTS+=("$port")
    wait_port "$port" || die "$name did not start: $(cat "$WORK/$name.log")"
}
for i in "${!NAMES[@]}"; do start "${NAMES[$i]}" "${BINS[$i]}"; done
if ((HAPROXY)); then
    NAMES+=(haproxy)
    start haproxy haproxy -db
fi

cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # utime stime, in clock ticks
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; } # idle + iowait, all CPUs
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# One run of the load generator against a port: prints "rate count" or fails with its output.
load() {
    local out count rate errors
    if [[ "$WORKLOAD" == http ]]; then
        out="$(taskset -c "$LOADGEN_CPUS" wrk -t 2 -c 32 -d "${SECONDS_PER_RUN}s" "http://127.0.0.1:$1/")"
        count="$(awk '/requests in/ { print $1 }' <<<"$out")"
        rate="$(awk '/Requests\/sec/ { print $2 }' <<<"$out")"
        errors="$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out")"
    else
        out="$(taskset -c "$LOADGEN_CPUS" "$BENCH_BIN" connrate --target "127.0.0.1:$1" -c 32 --sources 8 \
            -d "$SECONDS_PER_RUN" --threads "$SERVER_THREADS" 2>&1)"
        count="$(grep -o 'completed=[0-9]*' <<<"$out" | cut -d= -f2)"
        rate="$(grep -o 'conns_per_sec=[0-9.]*' <<<"$out" | cut -d= -f2)"
        errors="$(grep -o 'errors=[1-9][0-9]*' <<<"$out" || true)"
    fi
    [[ -n "$count" && "$count" -gt 0 ]] || { echo "$out" >&2; return 1; }
    [[ -z "$errors" ]] || echo "  $errors" >&2
    echo "$rate $count"
}
unit=request
[[ "$WORKLOAD" == conn ]] && unit=connection
echo "ab.sh: ${#NAMES[@]} proxies (nbthread $THREADS, $WORKLOAD) on CPUs $PROXY_CPUS, load generator and server on CPUs $LOADGEN_CPUS, $ROUNDS rounds of ${SECONDS_PER_RUN}s"
for round in $(seq "$ROUNDS"); do
    # The order rotates each round: a proxy run right after another inherits its TIME_WAIT
    # sockets and the state it left the machine in.
    nproxies=${#NAMES[@]}
    for step in $(seq 0 $((nproxies - 1))); do
        i=$(((step + round - 1) % nproxies))
        read -r u0 s0 < <(cpu_ticks "${PROXY_PIDS[$i]}")
        i0="$(idle_ticks)"
        result="$(load "${PORTS[$i]}")" || die "the load generator through ${NAMES[$i]} failed"
        i1="$(idle_ticks)"
        read -r u1 s1 < <(cpu_ticks "${PROXY_PIDS[$i]}")
        read -r rate count <<<"$result"
        echo "${NAMES[$i]} $rate $count $(((u1 - u0) * TICK_US)) $(((s1 - s0) * TICK_US)) $((i1 - i0))" >>"$WORK/runs"
        printf '  round %d %-12s %10.0f %s/s\n' "$round" "${NAMES[$i]}" "$rate" "$unit"
    done
done

python3 - "$WORK/runs" "$unit" "$SECONDS_PER_RUN" "${NAMES[@]}" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rate, count, user_us, sys_us, idle = line.split()
    n = int(count)
    runs.setdefault(name, []).append(
        (float(rate), (int(user_us) + int(sys_us)) / n, int(user_us) / n, int(sys_us) / n,
         int(idle)))
unit, seconds, names = sys.argv[2], sys.argv[3], sys.argv[4:]
def cell(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"
print()
print(f"| proxy | {unit}s/s | CPU µs/{unit} | user µs/{unit} | system µs/{unit} "
      f"| machine idle, ticks per {seconds} s |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for name in names:
    r = runs[name]
    print(f"| {name} | {cell([x[0] for x in r], '{:.0f}')} | {cell([x[1] for x in r], '{:.2f}')} "
          f"| {cell([x[2] for x in r], '{:.2f}')} | {cell([x[3] for x in r], '{:.2f}')} "
          f"| {cell([x[4] for x in r], '{:.0f}')} |")
base = statistics.median(x[1] for x in runs[names[-1]])
print()
print(f"CPU per {unit} relative to {names[-1]} (medians): " +
      ", ".join(f"{n} {statistics.median(x[1] for x in runs[n]) / base:.3f}" for n in names))
EOF
