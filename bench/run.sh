#!/usr/bin/env bash
# Switchyard benchmark: direct vs Switchyard vs HAProxy, in one run, on loopback.
#
#   bench/run.sh            # BENCH_SECONDS (default 10) per measured run, ~7-8 minutes
#   bench/run.sh --quick    # 3 s per measured run, ~2-3 minutes
#
# See bench/README.md for what is measured and how to read the ratios.
set -uo pipefail

# ---------------------------------------------------------------------------- settings
usage() {
    cat <<'EOF'
usage: bench/run.sh [--quick] [--help]

  --quick     3 s per measured run (overrides BENCH_SECONDS)

environment:
  BENCH_SECONDS     seconds per measured run (default 10)
  BENCH_REPS        runs per configuration, interleaved; the median is reported (default 3)
  BENCH_THREADS     nbthread for BOTH proxies (default 1)
  BENCH_PROXY_CPUS  taskset CPU list for BOTH proxies (default: the last BENCH_THREADS CPUs)
  BENCH_WARMUP      seconds of unrecorded pgbench -S warm-up per path (default 2, 0 = none)
  BENCH_OUT         report path (default bench/results/<date>-<git short sha>.md)
  SWITCHYARD_BIN    switchyard binary (default <repo>/target/release/switchyard;
                    built with `cargo build --release -p switchyard` if missing)
  HAPROXY_BIN       haproxy binary (default: haproxy from PATH)
  PG_BINDIR         PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
EOF
}

DURATION="${BENCH_SECONDS:-10}"
for arg in "$@"; do
    case "$arg" in
        --quick) DURATION=3 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done
REPS="${BENCH_REPS:-3}"
THREADS="${BENCH_THREADS:-1}"
WARMUP="${BENCH_WARMUP:-2}"
PGB_CLIENTS=16      # pgbench -S persistent connections
PGB_C_CLIENTS=8     # pgbench -S -C (connection per transaction)
PGB_JOBS=2
PGB_SCALE=10
PATHS=(direct switchyard haproxy)

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

log()  { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || die "BENCH_SECONDS must be a positive integer"
[[ "$REPS" =~ ^[0-9]+$ && "$REPS" -ge 1 ]] || die "BENCH_REPS must be a positive integer"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 ]] || die "BENCH_THREADS must be a positive integer"

# ---------------------------------------------------------------------------- cleanup
WORK=""
PIDS=()
PG_STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    if [[ "$PG_STARTED" == 1 ]]; then
        as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/pgdata" -m immediate -w stop >/dev/null 2>&1
    fi
    for pid in "${PIDS[@]}"; do
        # give each process a moment, then insist
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ -n "${BENCH_KEEP_WORK:-}" ]]; then log "keeping $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------- dependencies
find_pg_bindir() { # newest /usr/lib/postgresql/<major>/bin with an initdb
    local d
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | while read -r d; do
        [[ -x "$d/initdb" ]] && echo "$d"
    done | tail -1
}

missing_deps() {
    local m=()
    have "${HAPROXY_BIN:-haproxy}" || m+=(haproxy)
    have iperf3 || m+=(iperf3)
    [[ -n "${PG_BINDIR:-$(find_pg_bindir)}" ]] || m+=(postgresql)
    have taskset || m+=(taskset)
    have python3 || m+=(python3)
    echo "${m[*]}"
}

if [[ -n "$(missing_deps)" ]]; then
    log "missing: $(missing_deps)"
    if [[ -f "$REPO_ROOT/scripts/ensure-deps.sh" ]]; then
        log "running scripts/ensure-deps.sh"
        bash "$REPO_ROOT/scripts/ensure-deps.sh" || die "scripts/ensure-deps.sh failed"
    elif have apt-get; then
        SUDO=""; [[ $EUID -ne 0 ]] && SUDO="sudo"
        $SUDO apt-get install -y haproxy iperf3 postgresql util-linux python3 ||
            { $SUDO apt-get update && $SUDO apt-get install -y haproxy iperf3 postgresql util-linux python3; } ||
            die "apt-get install failed"
    fi
    [[ -z "$(missing_deps)" ]] || die "still missing: $(missing_deps)"
fi

HAPROXY_BIN="$(command -v "${HAPROXY_BIN:-haproxy}")"
PG_BINDIR="${PG_BINDIR:-$(find_pg_bindir)}"
PGBENCH="$PG_BINDIR/pgbench"; [[ -x "$PGBENCH" ]] || PGBENCH="$(command -v pgbench)" || die "pgbench not found"
PSQL="$PG_BINDIR/psql"; [[ -x "$PSQL" ]] || PSQL="$(command -v psql)"

SWITCHYARD_BIN="${SWITCHYARD_BIN:-$REPO_ROOT/target/release/switchyard}"
if [[ ! -x "$SWITCHYARD_BIN" ]]; then
    log "switchyard binary not found at $SWITCHYARD_BIN; building it (cargo build --release -p switchyard)"
    have cargo || die "cargo not found; set SWITCHYARD_BIN"
    (cd "$REPO_ROOT" && cargo build --release -p switchyard) || die "cargo build failed; set SWITCHYARD_BIN"
    # honour CARGO_TARGET_DIR if the caller set one
    if [[ ! -x "$SWITCHYARD_BIN" && -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/switchyard" ]]; then
        SWITCHYARD_BIN="$CARGO_TARGET_DIR/release/switchyard"
    fi
    [[ -x "$SWITCHYARD_BIN" ]] || die "built, but $SWITCHYARD_BIN still missing; set SWITCHYARD_BIN"
fi

NCPU="$(nproc)"
if [[ -n "${BENCH_PROXY_CPUS:-}" ]]; then
    PROXY_CPUS="$BENCH_PROXY_CPUS"
elif (( THREADS >= NCPU )); then
    PROXY_CPUS="0-$((NCPU - 1))"
else
    PROXY_CPUS="$((NCPU - THREADS))-$((NCPU - 1))"
fi

# ---------------------------------------------------------------------------- helpers
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")"
chmod 755 "$WORK"

# Run a command as the PostgreSQL OS user (postgres refuses to run as root).
if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user"
    chown postgres: "$WORK"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# N distinct free loopback TCP ports (bind to port 0, keep all open until all are chosen).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_port() { # port timeout_seconds: wait until something LISTENs on 127.0.0.1:port
    local port="$1" deadline=$((SECONDS + ${2:-15}))
    while (( SECONDS < deadline )); do
        if have ss; then
            [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
        else
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    return 1
}

median() { # values... (non-numeric ignored)
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "NA"; exit }
              if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

spread() { # values... -> (max - min) / median, in percent
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "NA"; exit }
              m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              if (m == 0) print "NA"; else printf "%.1f%%\n", 100 * (v[NR] - v[1]) / m }'
}

ratio() { # a b -> a/b
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.3f\n", a / b }'
}

fmt() { # number -> fixed precision by magnitude
    awk -v x="$1" 'BEGIN { if (x == "NA") print "NA"; else if (x + 0 >= 100) printf "%.0f\n", x;
                           else if (x + 0 >= 1) printf "%.2f\n", x; else printf "%.3f\n", x }'
}

# ---------------------------------------------------------------------------- ports
read -r PG_PORT IPERF_PORT SY_PG SY_IPERF HAP_PG HAP_IPERF <<<"$(free_ports 6)"
[[ -n "$HAP_IPERF" ]] || die "could not pick free ports"
declare -A PG_PORT_OF=([direct]=$PG_PORT [switchyard]=$SY_PG [haproxy]=$HAP_PG)
declare -A IPERF_PORT_OF=([direct]=$IPERF_PORT [switchyard]=$SY_IPERF [haproxy]=$HAP_IPERF)

# ---------------------------------------------------------------------------- proxy config
# One template for both proxies; only the bind ports differ.
TIMEOUT_S=$((DURATION * 2 + 60))
gen_config() { # pg_bind_port iperf_bind_port
    cat <<EOF
# generated by bench/run.sh -- identical for Switchyard and HAProxy except the bind ports
global
    maxconn 4096
    nbthread $THREADS

defaults
    mode tcp
    timeout connect 5s
    timeout client ${TIMEOUT_S}s
    timeout server ${TIMEOUT_S}s

listen bench_pg
    bind 127.0.0.1:$1
    balance roundrobin
    server s1 127.0.0.1:$PG_PORT

listen bench_iperf
    bind 127.0.0.1:$2
    balance roundrobin
    server s1 127.0.0.1:$IPERF_PORT
EOF
}
gen_config "$SY_PG" "$SY_IPERF" >"$WORK/switchyard.cfg"
gen_config "$HAP_PG" "$HAP_IPERF" >"$WORK/haproxy.cfg"

# ---------------------------------------------------------------------------- start backends
log "work dir $WORK; duration ${DURATION}s x $REPS reps; proxies: nbthread $THREADS, taskset -c $PROXY_CPUS"
log "switchyard: $SWITCHYARD_BIN"
log "haproxy:    $HAPROXY_BIN"

log "starting PostgreSQL ($PG_BINDIR) on 127.0.0.1:$PG_PORT"
as_pg "$PG_BINDIR/initdb" -D "$WORK/pgdata" -A trust -U postgres -E UTF8 --no-instructions \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$WORK -c fsync=off \
     -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >/dev/null || { cat "$WORK/postgres.log" >&2; die "postgres failed to start"; }
PG_STARTED=1

export PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1 PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGOPTIONS
log "pgbench -i -s $PGB_SCALE"
"$PGBENCH" -i -q -s "$PGB_SCALE" -p "$PG_PORT" >"$WORK/pgbench-init.log" 2>&1 ||
    { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }

log "starting iperf3 server on 127.0.0.1:$IPERF_PORT"
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
wait_port "$IPERF_PORT" || die "iperf3 server did not start"

log "starting switchyard on :$SY_PG (pg), :$SY_IPERF (iperf)"
SWITCHYARD_LOG="${SWITCHYARD_LOG:-error}" taskset -c "$PROXY_CPUS" "$SWITCHYARD_BIN" -f "$WORK/switchyard.cfg" \
    >"$WORK/switchyard.log" 2>&1 &
SY_PID=$!; PIDS+=($SY_PID)
log "starting haproxy on :$HAP_PG (pg), :$HAP_IPERF (iperf)"
taskset -c "$PROXY_CPUS" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!; PIDS+=($HAP_PID)

for spec in "switchyard:$SY_PID:$SY_PG:$SY_IPERF" "haproxy:$HAP_PID:$HAP_PG:$HAP_IPERF"; do
    IFS=: read -r name pid p1 p2 <<<"$spec"
    if ! wait_port "$p1" || ! wait_port "$p2" || ! kill -0 "$pid" 2>/dev/null; then
        cat "$WORK/$name.log" >&2
        die "$name did not start (config: $WORK/$name.cfg)"
    fi
    out="$("$PSQL" -X -A -t -p "$p1" -c 'select 42' 2>&1)"
    [[ "$out" == 42 ]] || { cat "$WORK/$name.log" >&2; die "query through $name failed: $out"; }
done
log "all paths answer"

alive() { # path -> 0 if its proxy process is still running
    case "$1" in
        switchyard) kill -0 "$SY_PID" 2>/dev/null ;;
        haproxy) kill -0 "$HAP_PID" 2>/dev/null ;;
        *) return 0 ;;
    esac
}

# ---------------------------------------------------------------------------- measurements
declare -A RAW     # RAW[metric:path] = "v1 v2 v3"
RAWLOG="$WORK/raw.tsv"
printf 'measurement\trep\tpath\tvalue\n' >"$RAWLOG"

record() { # metric path rep value
    RAW["$1:$2"]+="$4 "
    printf '%s\t%s\t%s\t%s\n' "$1" "$3" "$2" "$4" >>"$RAWLOG"
}

run_pgbench() { # tag path rep extra-args...  -> records tps (+ latency)
    local tag="$1" path="$2" rep="$3"; shift 3
    local port="${PG_PORT_OF[$path]}" out tps lat
    if ! alive "$path"; then
        log "$tag $path rep $rep: proxy is not running"; record "$tag.tps" "$path" "$rep" FAIL; return
    fi
    out="$("$PGBENCH" -n -p "$port" -T "$DURATION" -j "$PGB_JOBS" "$@" 2>&1)"
    printf '%s\n' "$out" >"$WORK/pgbench-$tag-$path-$rep.log"
    tps="$(awk '/^tps = / { print $3; exit }' <<<"$out")"
    lat="$(awk '/^latency average = / { print $4; exit }' <<<"$out")"
    if [[ -z "$tps" ]] || grep -qE 'aborted|error' <<<"$out"; then
        log "$tag $path rep $rep: pgbench failed ($(grep -m1 -iE 'error|abort|fatal' <<<"$out"))"
        [[ -n "$tps" ]] || tps=FAIL
    fi
    record "$tag.tps" "$path" "$rep" "${tps:-FAIL}"
    [[ -n "$lat" ]] && record "$tag.lat" "$path" "$rep" "$lat"
    printf '  %-9s %-10s rep %d: %12s tps   latency avg %s ms\n' "$tag" "$path" "$rep" "${tps:-FAIL}" "${lat:-NA}"
}

run_iperf() { # tag path rep parallel
    local tag="$1" path="$2" rep="$3" par="$4"
    local port="${IPERF_PORT_OF[$path]}" gbps="" try
    if ! alive "$path"; then
        log "$tag $path rep $rep: proxy is not running"; record "$tag" "$path" "$rep" FAIL; return
    fi
    for try in 1 2 3; do   # the iperf3 server serves one test at a time; retry if still busy
        iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -P "$par" -J >"$WORK/iperf-$tag-$path-$rep.json" 2>&1
        gbps="$(python3 - "$WORK/iperf-$tag-$path-$rep.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception:
    pass
EOF
)"
        [[ -n "$gbps" ]] && break
        sleep 1
    done
    record "$tag" "$path" "$rep" "${gbps:-FAIL}"
    printf '  %-9s %-10s rep %d: %12s Gbit/s\n' "$tag" "$path" "$rep" "${gbps:-FAIL}"
    sleep 0.5
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
T0=$SECONDS

if (( WARMUP > 0 )); then
    log "warm-up: pgbench -S ${WARMUP}s per path (not recorded)"
    for path in "${PATHS[@]}"; do
        "$PGBENCH" -n -S -M prepared -c "$PGB_CLIENTS" -j "$PGB_JOBS" -T "$WARMUP" -p "${PG_PORT_OF[$path]}" >/dev/null 2>&1
    done
fi

echo "== 1. pgbench -S -M prepared -c $PGB_CLIENTS -j $PGB_JOBS -T $DURATION (persistent connections)"
for rep in $(seq 1 "$REPS"); do
    for path in "${PATHS[@]}"; do run_pgbench pgS "$path" "$rep" -S -M prepared -c "$PGB_CLIENTS"; done
done

echo "== 2. pgbench -S -C -c $PGB_C_CLIENTS -j $PGB_JOBS -T $DURATION (new connection per transaction)"
for rep in $(seq 1 "$REPS"); do
    for path in "${PATHS[@]}"; do run_pgbench pgSC "$path" "$rep" -S -C -c "$PGB_C_CLIENTS"; done
done

echo "== 3. iperf3 -t $DURATION -P 1 / -P 4 (bulk TCP)"
for par in 1 4; do
    for rep in $(seq 1 "$REPS"); do
        for path in "${PATHS[@]}"; do run_iperf "iperfP$par" "$path" "$rep" "$par"; done
    done
done

ELAPSED=$((SECONDS - T0))
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
alive switchyard || log "WARNING: switchyard exited during the run (log: $WORK/switchyard.log)"
alive haproxy || log "WARNING: haproxy exited during the run (log: $WORK/haproxy.log)"

# ---------------------------------------------------------------------------- summary
# metric key | label | unit | higher is better?
METRICS=(
    "pgS.tps|pgbench -S TPS (c=$PGB_CLIENTS)|tps|1"
    "pgS.lat|pgbench -S avg latency (c=$PGB_CLIENTS)|ms|0"
    "pgSC.tps|pgbench -S -C TPS (c=$PGB_C_CLIENTS)|tps|1"
    "iperfP1|iperf3 -P 1|Gbit/s|1"
    "iperfP4|iperf3 -P 4|Gbit/s|1"
)

declare -A MED
for m in "${METRICS[@]}"; do
    IFS='|' read -r key _ _ _ <<<"$m"
    for path in "${PATHS[@]}"; do
        # shellcheck disable=SC2086
        MED["$key:$path"]="$(median ${RAW["$key:$path"]:-})"
    done
done

table() { # style: text | md
    local style="$1" m key label unit d s h
    if [[ "$style" == md ]]; then
        echo "| measurement | unit | direct | switchyard | haproxy | sy/direct | hap/direct | sy/hap |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|"
    else
        printf '%-32s %-6s %10s %11s %10s %10s %11s %8s\n' \
            measurement unit direct switchyard haproxy sy/direct hap/direct sy/hap
        printf '%s\n' "--------------------------------------------------------------------------------------------------"
    fi
    for m in "${METRICS[@]}"; do
        IFS='|' read -r key label unit _ <<<"$m"
        d="${MED[$key:direct]}"; s="${MED[$key:switchyard]}"; h="${MED[$key:haproxy]}"
        if [[ "$style" == md ]]; then
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$unit" "$(fmt "$d")" "$(fmt "$s")" \
                "$(fmt "$h")" "$(ratio "$s" "$d")" "$(ratio "$h" "$d")" "$(ratio "$s" "$h")"
        else
            printf '%-32s %-6s %10s %11s %10s %10s %11s %8s\n' "$label" "$unit" "$(fmt "$d")" "$(fmt "$s")" \
                "$(fmt "$h")" "$(ratio "$s" "$d")" "$(ratio "$h" "$d")" "$(ratio "$s" "$h")"
        fi
    done
}

# Largest run-to-run spread of any cell: the noise floor of this run.
MAX_SPREAD="$(for m in "${METRICS[@]}"; do
    IFS='|' read -r key _ _ _ <<<"$m"
    # shellcheck disable=SC2086
    for path in "${PATHS[@]}"; do spread ${RAW["$key:$path"]:-}; done
done | tr -d '%' | grep -E '^[0-9.]+$' | sort -g | tail -1)"
NOISE_NOTE=""
if [[ -n "$MAX_SPREAD" ]] && awk -v s="$MAX_SPREAD" 'BEGIN { exit !(s > 10) }'; then
    NOISE_NOTE="WARNING: run-to-run spread up to ${MAX_SPREAD}% (load average at start $LOAD_START, at end $LOAD_END); treat ratio differences smaller than that as noise"
fi

echo
echo "== medians of $REPS interleaved runs, ${DURATION}s each (latency: lower is better; everything else: higher)"
table text
[[ -n "$NOISE_NOTE" ]] && echo "$NOISE_NOTE"

# ---------------------------------------------------------------------------- report
SHA="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo nogit)"
if [[ "$SHA" != nogit ]] && [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    SHA="$SHA-dirty"
fi
DATE="$(date +%Y-%m-%d)"
if [[ -n "${BENCH_OUT:-}" ]]; then
    REPORT="$BENCH_OUT"
else
    REPORT="$SCRIPT_DIR/results/$DATE-$SHA.md"
    n=2
    while [[ -e "$REPORT" ]]; do REPORT="$SCRIPT_DIR/results/$DATE-$SHA-$n.md"; n=$((n + 1)); done
fi
mkdir -p "$(dirname "$REPORT")"

version_of() { "$@" 2>&1 | head -1; }
{
    echo "# Switchyard benchmark — $DATE ($SHA)"
    echo
    echo "## Method"
    echo
    echo "- One run of \`bench/run.sh\` on one machine; everything on loopback (127.0.0.1)."
    echo "- Three paths to the same backends: **direct** (client → server), **switchyard** and **haproxy**"
    echo "  (client → proxy → server). Both proxies run concurrently, each from the same generated config"
    echo "  (only the bind ports differ; see below): tcp mode, \`nbthread $THREADS\`, no logging, same timeouts,"
    echo "  each pinned with \`taskset -c $PROXY_CPUS\`. Clients and servers are not pinned."
    echo "- Each configuration is run $REPS times for ${DURATION}s, interleaved (direct, switchyard, haproxy,"
    echo "  direct, switchyard, haproxy, …) so that drift in machine load hits all paths alike;"
    echo "  the table shows the **median** of the $REPS runs. All raw runs are listed at the end."
    if (( WARMUP > 0 )); then
        echo "- Before measuring, an unrecorded ${WARMUP}s \`pgbench -S\` warm-up per path."
    fi
    echo "- Measurements:"
    echo "  1. \`pgbench -S -M prepared -c $PGB_CLIENTS -j $PGB_JOBS -T $DURATION\` (persistent connections,"
    echo "     scale $PGB_SCALE): TPS and average latency."
    echo "  2. \`pgbench -S -C -c $PGB_C_CLIENTS -j $PGB_JOBS -T $DURATION\` (a new connection per transaction): TPS."
    echo "  3. \`iperf3 -t $DURATION -P 1\` and \`-P 4\` (control + data connections all through the proxy):"
    echo "     receiver throughput in Gbit/s."
    echo "- PostgreSQL is a throwaway instance (fsync=off, synchronous_commit=off, full_page_writes=off,"
    echo "  max_connections=300)."
    echo "- Ratios: sy/direct and hap/direct are the fraction of direct performance each proxy keeps"
    echo "  (for latency: the multiple of direct latency); sy/hap compares Switchyard against HAProxy"
    echo "  (>1 is better for Switchyard for TPS and Gbit/s; <1 is better for latency)."
    echo
    echo "## Results (medians)"
    echo
    table md
    if [[ -n "$NOISE_NOTE" ]]; then
        echo
        echo "**$NOISE_NOTE.**"
    fi
    echo
    echo "## Environment"
    echo
    echo "- Host: $(uname -srm), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
    echo "- Load average at start: $LOAD_START; at end: $LOAD_END (the machine may be shared; check the spread of raw runs)"
    echo "- Measurement time: ${ELAPSED}s"
    echo "- switchyard: \`$SWITCHYARD_BIN\` ($(version_of "$SWITCHYARD_BIN" --version))"
    echo "- haproxy: \`$HAPROXY_BIN\` ($(version_of "$HAPROXY_BIN" -v))"
    echo "- PostgreSQL: $(version_of "$PG_BINDIR/postgres" --version); pgbench: $(version_of "$PGBENCH" --version)"
    echo "- iperf3: $(version_of iperf3 --version)"
    echo
    echo "## Proxy configuration"
    echo
    echo '```haproxy'
    cat "$WORK/switchyard.cfg"
    echo '```'
    echo
    echo "HAProxy's copy differs only in the bind ports:"
    echo
    echo '```diff'
    diff -u --label switchyard.cfg --label haproxy.cfg "$WORK/switchyard.cfg" "$WORK/haproxy.cfg" | tail -n +3
    echo '```'
    echo
    echo "## Raw runs"
    echo
    echo "Spread = (max - min) / median of the runs of one cell; compare it with the ratios before"
    echo "reading anything into a difference of a few percent."
    echo
    echo "| measurement | path | run values (in order) | median | spread |"
    echo "|---|---|---|---:|---:|"
    for m in "${METRICS[@]}"; do
        IFS='|' read -r key label unit _ <<<"$m"
        for path in "${PATHS[@]}"; do
            # shellcheck disable=SC2086
            echo "| $label ($unit) | $path | $(echo ${RAW["$key:$path"]:-}) | ${MED[$key:$path]} | $(spread ${RAW["$key:$path"]:-}) |"
        done
    done
    if [[ -s "$WORK/switchyard.log" || -s "$WORK/haproxy.log" ]]; then
        echo
        echo "## Proxy stderr"
        echo
        echo '```'
        for name in switchyard haproxy; do
            [[ -s "$WORK/$name.log" ]] && { echo "--- $name"; tail -n 20 "$WORK/$name.log"; }
        done
        echo '```'
    fi
} >"$REPORT"

echo
echo "report: $REPORT"
