#!/usr/bin/env bash
# Interleaved A/B of a proxy's CPU cost: several Switchyard binaries (and HAProxy) in front of
# one server, a load generator against each in turn (wrk for `mode http` requests,
# `switchyard-bench connrate` for short TCP connections, `switchyard-bench latency` for the
# added latency of small echoes), the proxy's CPU time per request or connection from
# /proc/PID/stat, and for echoes the latency percentiles, paired round by round. For changes of a few percent, which the full suite (bench/run.sh) cannot
# resolve on a noisy machine: everything is pinned, runs are short and many, and each round
# visits every proxy once, so that drift hits them alike.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/ab.sh [-w http|conn|echo] [-s SECONDS] [-r ROUNDS] [-t THREADS] [--no-haproxy]
                  [--unpinned] [--busy-polling] [--rate N] [--conns N] NAME=BINARY [NAME=BINARY ...]

  -w WORKLOAD   http: `mode http` requests, wrk -t 2 -c 32 over keep-alive connections (default)
                conn: short TCP connections through `mode tcp` (connect, 64-byte echo, close;
                switchyard-bench connrate -c 32 --sources 8)
                echo: open-loop latency of 64-byte echoes through `mode tcp` (switchyard-bench
                latency --rate N over --conns N persistent connections; defaults 5000 and 16,
                as bench/run.sh); prints p50/p99/p99.9 per proxy and, per round, each
                proxy's ratio to the last one (HAProxy unless --no-haproxy)
  -s SECONDS    length of each run (default 5)
  -r ROUNDS     rounds; each runs the load generator once against every proxy (default 5)
  -t THREADS    nbthread of every proxy (default 1)
  --no-haproxy  compare the given binaries only
  --unpinned    pin nothing, whatever THREADS (as when THREADS >= the number of CPUs)
  --busy-polling  `busy-polling` in every proxy's `global`; the proxies not being measured
                are paused (SIGSTOP) so that their spinning threads leave the CPUs alone, and
                the CPU per request then includes the spinning
  --rate N      echo: requests per second in total (default 5000)
  --conns N     echo: persistent connections (default 16)

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
UNPINNED=0
BUSY_POLLING=0
WORKLOAD=http
LAT_RATE=5000
LAT_CONNS=16
declare -a NAMES=() BINS=()
while (($#)); do
    case "$1" in
        -w) WORKLOAD="$2"; shift 2 ;;
        -s) SECONDS_PER_RUN="$2"; shift 2 ;;
        -r) ROUNDS="$2"; shift 2 ;;
        -t) THREADS="$2"; shift 2 ;;
        --no-haproxy) HAPROXY=0; shift ;;
        --unpinned) UNPINNED=1; shift ;;
        --busy-polling) BUSY_POLLING=1; shift ;;
        --rate) LAT_RATE="$2"; shift 2 ;;
        --conns) LAT_CONNS="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *=*) NAMES+=("${1%%=*}"); BINS+=("${1#*=}"); shift ;;
        *) usage >&2; exit 2 ;;
    esac
done
((${#NAMES[@]} > 0)) || { usage >&2; exit 2; }
die() { echo "ab.sh: $*" >&2; exit 1; }
for bin in "${BINS[@]}"; do [[ -x "$bin" ]] || die "$bin is not an executable"; done
[[ "$WORKLOAD" =~ ^(http|conn|echo)$ ]] || die "-w wants http, conn or echo, not '$WORKLOAD'"
[[ "$LAT_RATE" =~ ^[1-9][0-9]*$ && "$LAT_CONNS" =~ ^[1-9][0-9]*$ ]] || die "--rate and --conns want positive integers"
[[ "$WORKLOAD" != http ]] || command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
((HAPROXY == 0)) || command -v haproxy >/dev/null || die "haproxy is missing (or pass --no-haproxy)"

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_BIN="${SWITCHYARD_BENCH_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/switchyard-bench}"
[[ -x "$BENCH_BIN" ]] || die "$BENCH_BIN missing: cargo build --release -p switchyard-bench"

[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "-t wants a positive thread count, not '$THREADS'"
NCPU="$(nproc)"
if ((THREADS >= NCPU || UNPINNED)); then
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
    # A paused proxy (--busy-polling) acts on the signal once continued.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && kill -CONT "$pid" 2>/dev/null || true; done
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
    [[ "$WORKLOAD" != http ]] && mode=tcp server_port="$ECHO_PORT"
    cat <<EOF
global
    maxconn 4096
    nbthread $THREADS
$( ((BUSY_POLLING)) && echo "    busy-polling")
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
    ((BUSY_POLLING)) && kill -STOP "${PROXY_PIDS[-1]}"
    return 0
}
for i in "${!NAMES[@]}"; do start "${NAMES[$i]}" "${BINS[$i]}"; done
if ((HAPROXY)); then
    NAMES+=(haproxy)
    start haproxy haproxy -db
fi

cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # utime stime, in clock ticks
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; } # idle + iowait, all CPUs
TICK_US=$((1000000 / $(getconf CLK_TCK)))
kv() { grep -o "\b$1=[0-9.]*" <<<"$2" | head -n 1 | cut -d= -f2; } # key text -> value
# One run of the load generator against a port: prints "rate count [p50 p99 p99.9 sender-lag]"
# (latencies in microseconds, echo only) or fails with its output.
load() {
    local out count rate errors
    if [[ "$WORKLOAD" == echo ]]; then
        out="$(taskset -c "$LOADGEN_CPUS" "$BENCH_BIN" latency --target "127.0.0.1:$1" -c "$LAT_CONNS" \
            -r "$LAT_RATE" -d "$SECONDS_PER_RUN" --warmup 0.5 --size 64 2>&1)"
        count="$(kv received "$out")"
        [[ -n "$(kv p50_us "$out")" && -n "$count" && "$count" -gt 0 ]] || { echo "$out" >&2; return 1; }
        [[ "$(kv lost "$out")" == 0 ]] || echo "  $(kv lost "$out") requests without an answer" >&2
        echo "$(kv achieved_rate "$out") $count $(kv p50_us "$out") $(kv p99_us "$out") $(kv p999_us "$out") $(kv sched_lag_p99_us "$out")"
        return
    elif [[ "$WORKLOAD" == http ]]; then
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
[[ "$WORKLOAD" == echo ]] && unit=echo
echo "ab.sh: ${#NAMES[@]} proxies (nbthread $THREADS, $WORKLOAD) on CPUs $PROXY_CPUS, load generator and server on CPUs $LOADGEN_CPUS, $ROUNDS rounds of ${SECONDS_PER_RUN}s"
for round in $(seq "$ROUNDS"); do
    # The order rotates each round: a proxy run right after another inherits its TIME_WAIT
    # sockets and the state it left the machine in.
    nproxies=${#NAMES[@]}
    for step in $(seq 0 $((nproxies - 1))); do
        i=$(((step + round - 1) % nproxies))
        ((BUSY_POLLING)) && kill -CONT "${PROXY_PIDS[$i]}"
        read -r u0 s0 < <(cpu_ticks "${PROXY_PIDS[$i]}")
        i0="$(idle_ticks)"
        result="$(load "${PORTS[$i]}")" || die "the load generator through ${NAMES[$i]} failed"
        i1="$(idle_ticks)"
        read -r u1 s1 < <(cpu_ticks "${PROXY_PIDS[$i]}")
        ((BUSY_POLLING)) && kill -STOP "${PROXY_PIDS[$i]}"
        read -r rate count latencies <<<"$result"
        echo "${NAMES[$i]} $rate $count $(((u1 - u0) * TICK_US)) $(((s1 - s0) * TICK_US)) $((i1 - i0)) $round $latencies" >>"$WORK/runs"
        if [[ -n "$latencies" ]]; then
            read -r p50 p99 p999 lag <<<"$latencies"
            printf '  round %d %-12s p50 %7s us  p99 %7s us  p99.9 %7s us  (sender lag p99 %s us)\n' \
                "$round" "${NAMES[$i]}" "$p50" "$p99" "$p999" "$lag"
        else
            printf '  round %d %-12s %10.0f %s/s\n' "$round" "${NAMES[$i]}" "$rate" "$unit"
        fi
    done
done

python3 - "$WORK/runs" "$unit" "$SECONDS_PER_RUN" "${NAMES[@]}" <<'EOF'
import statistics, sys
runs, latencies = {}, {}
for line in open(sys.argv[1]):
    name, rate, count, user_us, sys_us, idle, rnd, *lat = line.split()
    n = int(count)
    runs.setdefault(name, []).append(
        (float(rate), (int(user_us) + int(sys_us)) / n, int(user_us) / n, int(sys_us) / n,
         int(idle)))
    if lat:
        latencies.setdefault(name, {})[int(rnd)] = [float(v) for v in lat]
unit, seconds, names = sys.argv[2], sys.argv[3], sys.argv[4:]
def cell(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"
def table(header, rows):
    print()
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
plural = unit + ("es" if unit.endswith("o") else "s")
table(["proxy", f"{plural}/s", f"CPU µs/{unit}", f"user µs/{unit}", f"system µs/{unit}",
       f"machine idle, ticks per {seconds} s"],
      [[name] + [cell([x[k] for x in runs[name]], fmt)
                 for k, fmt in enumerate(['{:.0f}', '{:.2f}', '{:.2f}', '{:.2f}', '{:.0f}'])]
       for name in names])
base = statistics.median(x[1] for x in runs[names[-1]])
print()
print(f"CPU per {unit} relative to {names[-1]} (medians): " +
      ", ".join(f"{n} {statistics.median(x[1] for x in runs[n]) / base:.3f}" for n in names))
if latencies:
    # Latency drifts with the machine from one round to the next; a ratio taken within each
    # round, where the proxies ran seconds apart, resolves smaller differences than medians.
    ref = names[-1]
    rows = []
    for name in names:
        mine = latencies[name]
        cols = [cell([v[k] for v in mine.values()], '{:.1f}') for k in range(4)]
        pairs = [(mine[r], latencies[ref][r]) for r in mine if r in latencies[ref]]
        if name == ref or not pairs:
            ratios, better = ["", ""], ""
        else:
            ratios = [cell([a[k] / b[k] for a, b in pairs], '{:.3f}') for k in (0, 1)]
            better = f"{sum(a[0] < b[0] for a, b in pairs)}/{len(pairs)}"
        rows.append([name] + cols + ratios + [better])
    table(["proxy", "p50 µs", "p99 µs", "p99.9 µs", "sender lag p99 µs", f"p50 / {ref} by round",
           f"p99 / {ref} by round", f"rounds p50 below {ref}"], rows)
EOF
