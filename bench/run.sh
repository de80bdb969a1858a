#!/usr/bin/env bash
# Switchyard benchmark: direct vs Switchyard vs HAProxy, in one run, on loopback.
#
#   bench/run.sh            # BENCH_SECONDS (default 10) per measured run, ~13 minutes
#   bench/run.sh --quick    # 2 s per measured run, 1 warm-up second, ~3.5 minutes
#
# See bench/README.md for what is measured and how to read the ratios.
set -uo pipefail

# ---------------------------------------------------------------------------- settings
usage() {
    cat <<'EOF'
usage: bench/run.sh [--quick] [--help]

  --quick     2 s per measured run (overrides BENCH_SECONDS), 1 s warm-up

environment:
  BENCH_SECONDS     seconds per measured run (default 10)
  BENCH_REPS        runs per configuration, interleaved; the median is reported (default 3)
  BENCH_THREADS     nbthread for BOTH proxies (default 1)
  BENCH_PROXY_CPUS  taskset CPU list for BOTH proxies (default: the last BENCH_THREADS CPUs)
  BENCH_LOADGEN_CPUS  taskset CPU list for iperf3 (client and server), wrk and the
                    switchyard-bench servers and clients (default: the CPUs the proxies do
                    not use; none = unpinned, also when the proxies use every CPU)
  BENCH_WARMUP      seconds of unrecorded pgbench -S warm-up per path (default 2, 0 = none)
  BENCH_CONN_CLIENTS  concurrent clients of the short-connection test (default 32)
  BENCH_LAT_RATE    requests/s of the open-loop latency test (default 5000)
  BENCH_LAT_CONNS   persistent connections of the latency test (default 16)
  BENCH_LAT_RETRIES re-runs of a latency run whose load generator lagged (default 2)
  BENCH_LAT_MAX_LAG sender-lag p99 (us) above which a latency run is re-run (default:
                    1.5 x the quietest run's, at least 30)
  BENCH_IDLE_CONNS  idle proxied connections for the memory test (default 10000; lowered
                    to fit the open-files limit)
  BENCH_SOURCES     client source addresses 127.0.0.1..N for short/idle connections (default 8)
  BENCH_HTTP        1 = also run wrk through mode http (default), 0 = skip
  BENCH_KERNEL_FORWARD  1 = Switchyard's tcp sections forward in the kernel (`option
                    kernel-forward`, needs root); HAProxy's config is unchanged (default 0)
  BENCH_OUT         report path (default bench/results/<date>-<git short sha>.md)
  SWITCHYARD_BIN    switchyard binary (default <repo>/target/release/switchyard;
                    built with `cargo build --release -p switchyard` if missing)
  SWITCHYARD_BENCH_BIN  load generator (default <repo>/target/release/switchyard-bench;
                    `cargo build --release -p switchyard-bench` is run first to keep it current)
  HAPROXY_BIN       haproxy binary (default: haproxy from PATH)
  PG_BINDIR         PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
EOF
}

DURATION="${BENCH_SECONDS:-10}"
QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) DURATION=2; QUICK=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done
REPS="${BENCH_REPS:-3}"
THREADS="${BENCH_THREADS:-1}"
WARMUP="${BENCH_WARMUP:-2}"
[[ "$QUICK" == 1 && -z "${BENCH_WARMUP:-}" ]] && WARMUP=1
CONN_CLIENTS="${BENCH_CONN_CLIENTS:-32}"   # short TCP connections: concurrent clients
MSG_SIZE=64                                 # request (= echo) size of the echo tests
LAT_RETRIES="${BENCH_LAT_RETRIES:-2}"        # re-runs of a latency run whose sender lagged
LAT_RATE="${BENCH_LAT_RATE:-5000}"         # open-loop latency: requests/s in total
LAT_CONNS="${BENCH_LAT_CONNS:-16}"         # ... over this many persistent connections
IDLE_CONNS="${BENCH_IDLE_CONNS:-10000}"    # memory: idle proxied connections
SOURCES="${BENCH_SOURCES:-8}"              # client source addresses 127.0.0.1..N
HTTP="${BENCH_HTTP:-1}"
KERNEL_FORWARD="${BENCH_KERNEL_FORWARD:-0}"
WRK_THREADS=2
WRK_CONNS=32
PGB_CLIENTS=16      # pgbench -S persistent connections
PGB_C_CLIENTS=8     # pgbench -S -C (connection per transaction)
PGB_JOBS=2
PGB_SCALE=10
PATHS=(direct switchyard haproxy)
# The paths in rep N's order: rotated by one each rep, so that no path always runs right
# after the same other one (a path inherits its predecessor's TIME_WAIT sockets, page cache
# and CPU frequency state).
paths_of_rep() {
    local shift=$((($1 - 1) % ${#PATHS[@]}))
    echo "${PATHS[@]:shift}" "${PATHS[@]:0:shift}"
}

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

log()  { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || die "BENCH_SECONDS must be a positive integer"
[[ "$REPS" =~ ^[0-9]+$ && "$REPS" -ge 1 ]] || die "BENCH_REPS must be a positive integer"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 ]] || die "BENCH_THREADS must be a positive integer"
for v in CONN_CLIENTS LAT_CONNS IDLE_CONNS SOURCES; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive integer"
done
[[ "$LAT_RATE" =~ ^[0-9]+$ && "$LAT_RATE" -ge 1 ]] || die "BENCH_LAT_RATE must be a positive integer"
(( SOURCES <= 254 )) || die "BENCH_SOURCES must be at most 254"

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
    [[ "$HTTP" == 1 ]] && ! have wrk && m+=(wrk)
    echo "${m[*]}"
}

if [[ -n "$(missing_deps)" ]]; then
    log "missing: $(missing_deps)"
    if [[ -f "$REPO_ROOT/scripts/ensure-deps.sh" ]]; then
        log "running scripts/ensure-deps.sh"
        bash "$REPO_ROOT/scripts/ensure-deps.sh" || die "scripts/ensure-deps.sh failed"
    elif have apt-get; then
        SUDO=""; [[ $EUID -ne 0 ]] && SUDO="sudo"
        $SUDO apt-get install -y haproxy iperf3 postgresql util-linux python3 wrk ||
            { $SUDO apt-get update && $SUDO apt-get install -y haproxy iperf3 postgresql util-linux python3 wrk; } ||
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

# The load generator and test servers (crates/switchyard-bench). Rebuilt when cargo is there, so
# that it matches the checkout (a no-op when it is up to date).
if [[ -n "${SWITCHYARD_BENCH_BIN:-}" ]]; then
    BENCH_BIN="$SWITCHYARD_BENCH_BIN"
else
    BENCH_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/switchyard-bench"
    [[ "$BENCH_BIN" == /* ]] || BENCH_BIN="$REPO_ROOT/$BENCH_BIN"
    if have cargo; then
        log "building the load generator (cargo build --release -p switchyard-bench)"
        (cd "$REPO_ROOT" && cargo build --release -q -p switchyard-bench) ||
            log "WARNING: cargo build -p switchyard-bench failed; using the existing binary if any"
    fi
fi
[[ -x "$BENCH_BIN" ]] || die "load generator $BENCH_BIN not found; build it (cargo build --release -p switchyard-bench) or set SWITCHYARD_BENCH_BIN"

# Open files: the memory test needs ~2 descriptors per idle connection in each proxy (client
# side + server side). Raise the limit as far as allowed (the hard limit only moves with
# CAP_SYS_RESOURCE) and lower the number of idle connections to what fits.
NOFILE_WANT=$((2 * IDLE_CONNS + 1000))
hard="$(ulimit -Hn)"
if [[ "$hard" != unlimited ]] && (( hard < NOFILE_WANT )); then
    ulimit -Hn "$NOFILE_WANT" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -Sn)"
[[ "$NOFILE" == unlimited ]] && NOFILE=1048576
IDLE_REQUESTED="$IDLE_CONNS"
if (( 2 * IDLE_CONNS + 300 > NOFILE )); then
    IDLE_CONNS=$(((NOFILE - 300) / 2))
    (( IDLE_CONNS >= 100 )) || die "open-files limit $NOFILE is too low for the memory test"
    log "WARNING: open-files limit is $NOFILE (hard limit not raisable here): memory test with $IDLE_CONNS idle connections instead of $IDLE_REQUESTED"
fi
# maxconn must admit the idle connections; HAProxy sizes its own FD limit from it (2 per conn)
MAXCONN=$((IDLE_CONNS + 20)); (( MAXCONN < 4096 )) && MAXCONN=4096

NCPU="$(nproc)"
if [[ -n "${BENCH_PROXY_CPUS:-}" ]]; then
    PROXY_CPUS="$BENCH_PROXY_CPUS"
elif (( THREADS >= NCPU )); then
    PROXY_CPUS="0-$((NCPU - 1))"
else
    PROXY_CPUS="$((NCPU - THREADS))-$((NCPU - 1))"
fi
# iperf3's two ends and wrk are pinned away from the proxies. Unpinned, the scheduler moves
# them on and off the proxy's CPU, and the results depend on that placement more than on the
# proxy: single-stream iperf3 came out bimodal (14 or 18 Gbit/s for one binary), and wrk's
# p99 doubled for one proxy and not the other, while pinned to either CPU it was the same
# for both. pgbench and PostgreSQL stay unpinned: on one CPU they would measure the direct
# path on half the machine.
cpus_other_than() { # taskset list -> the other CPUs of this machine as a list, or nothing
    python3 - "$1" "$NCPU" <<'PY'
import sys
used = set()
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    used.update(range(int(a), int(b or a) + 1))
print(",".join(str(c) for c in range(int(sys.argv[2])) if c not in used))
PY
}
LOADGEN_CPUS="${BENCH_LOADGEN_CPUS:-$(cpus_other_than "$PROXY_CPUS")}"
[[ "$LOADGEN_CPUS" == none ]] && LOADGEN_CPUS=""
# Worker threads for the switchyard-bench servers and clients: no more than the CPUs they
# are pinned to (two server threads sharing one CPU made HTTP runs swing by 20 %).
LOADGEN_NCPU="$NCPU"
[[ -n "$LOADGEN_CPUS" ]] && LOADGEN_NCPU="$(python3 -c '
import sys
print(sum(len(range(int(a), int(b or a) + 1)) for a, _, b in (p.partition("-") for p in sys.argv[1].split(","))))' "$LOADGEN_CPUS")"
loadgen_pin() { # command... -> runs it pinned to LOADGEN_CPUS when set
    local -a pin=()
    [[ -n "$LOADGEN_CPUS" ]] && pin=(taskset -c "$LOADGEN_CPUS")
    # In a subshell (`loadgen_pin ... &`, `$(...)`) the command replaces it: `$!` is then the
    # command itself, which the cleanup's `kill` reaches (killing the subshell orphaned the
    # test servers and idle-connection holders of every run).
    if [[ "$BASHPID" != "$$" ]]; then exec "${pin[@]}" "$@"; fi
    "${pin[@]}" "$@"
}

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

rss_kib() { # pid -> VmRSS in KiB
    awk '/^VmRSS:/ { print $2; exit }' "/proc/$1/status" 2>/dev/null
}

cpu_ticks() { # pid -> utime + stime of all its threads, in clock ticks
    # the command name (field 2) may contain spaces: count fields after the last ')'
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

kv() { # key line -> value of key=value in line
    tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2; exit }'
}

# Switchyard against HAProxy round by round: the two ran next to each other in each rep, so the
# ratio of a rep's pair sees the same machine load, which the ratio of medians need not.
paired() { # metric-key higher-is-better(1|0) -> "r1 r2 ... (k/n)": k = rounds Switchyard was better
    awk -F'\t' -v k="$1" -v hib="$2" '
        $1 == k && ($3 == "switchyard" || $3 == "haproxy") && $4 ~ /^[0-9.]+$/ {
            v[$3, $2] = $4; if ($2 + 0 > last) last = $2 + 0 }
        END {
            for (r = 1; r <= last; r++) {
                if (!((("switchyard", r) in v) && (("haproxy", r) in v)) || v["haproxy", r] + 0 == 0) continue
                x = v["switchyard", r] / v["haproxy", r]; n++
                if ((hib && x > 1) || (!hib && x < 1)) better++
                out = out sprintf("%s%.2f", (n > 1 ? " " : ""), x)
            }
            if (n == 0) print "NA"; else printf "%s (%d/%d)\n", out, better, n
        }' "$RAWLOG"
}

fmt() { # number -> fixed precision by magnitude
    awk -v x="$1" 'BEGIN { if (x == "NA") print "NA"; else if (x + 0 >= 100) printf "%.0f\n", x;
                           else if (x + 0 >= 1) printf "%.2f\n", x; else printf "%.3f\n", x }'
}

# ---------------------------------------------------------------------------- ports
read -r PG_PORT IPERF_PORT ECHO_PORT HTTP_PORT SY_PG SY_IPERF SY_ECHO SY_HTTP HAP_PG HAP_IPERF HAP_ECHO HAP_HTTP \
    <<<"$(free_ports 12)"
[[ -n "$HAP_HTTP" ]] || die "could not pick free ports"
declare -A PG_PORT_OF=([direct]=$PG_PORT [switchyard]=$SY_PG [haproxy]=$HAP_PG)
declare -A IPERF_PORT_OF=([direct]=$IPERF_PORT [switchyard]=$SY_IPERF [haproxy]=$HAP_IPERF)
declare -A ECHO_PORT_OF=([direct]=$ECHO_PORT [switchyard]=$SY_ECHO [haproxy]=$HAP_ECHO)
declare -A HTTP_PORT_OF=([direct]=$HTTP_PORT [switchyard]=$SY_HTTP [haproxy]=$HAP_HTTP)

# ---------------------------------------------------------------------------- proxy config
# One template for both proxies; only the bind ports differ.
TIMEOUT_S=$((DURATION * 2 + 60))
gen_config() { # pg_bind_port iperf_bind_port echo_bind_port http_bind_port [tcp-section line]
    local tcp_extra="${5:-}"
    cat <<EOF
# generated by bench/run.sh -- identical for Switchyard and HAProxy except the bind ports
# (and Switchyard's \`option kernel-forward\` with BENCH_KERNEL_FORWARD=1)
global
    maxconn $MAXCONN
    nbthread $THREADS

defaults
    mode tcp
    maxconn $MAXCONN
    timeout connect 5s
    timeout client ${TIMEOUT_S}s
    timeout server ${TIMEOUT_S}s

listen bench_pg
    bind 127.0.0.1:$1
    balance roundrobin$tcp_extra
    server s1 127.0.0.1:$PG_PORT

listen bench_iperf
    bind 127.0.0.1:$2
    balance roundrobin$tcp_extra
    server s1 127.0.0.1:$IPERF_PORT

listen bench_echo
    bind 127.0.0.1:$3
    balance roundrobin$tcp_extra
    server s1 127.0.0.1:$ECHO_PORT

listen bench_http
    mode http
    bind 127.0.0.1:$4
    balance roundrobin
    server s1 127.0.0.1:$HTTP_PORT
EOF
}
SY_TCP_EXTRA=""
(( KERNEL_FORWARD )) && SY_TCP_EXTRA=$'\n    option kernel-forward'
gen_config "$SY_PG" "$SY_IPERF" "$SY_ECHO" "$SY_HTTP" "$SY_TCP_EXTRA" >"$WORK/switchyard.cfg"
gen_config "$HAP_PG" "$HAP_IPERF" "$HAP_ECHO" "$HAP_HTTP" >"$WORK/haproxy.cfg"

# ---------------------------------------------------------------------------- start backends
log "work dir $WORK; duration ${DURATION}s x $REPS reps; proxies: nbthread $THREADS, taskset -c $PROXY_CPUS; open files $NOFILE"
log "switchyard: $SWITCHYARD_BIN"
log "haproxy:    $HAPROXY_BIN"
log "load generator: $BENCH_BIN"

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
loadgen_pin iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
wait_port "$IPERF_PORT" || die "iperf3 server did not start"

log "starting echo server on 127.0.0.1:$ECHO_PORT and HTTP server on 127.0.0.1:$HTTP_PORT"
loadgen_pin "$BENCH_BIN" serve --echo "127.0.0.1:$ECHO_PORT" --http "127.0.0.1:$HTTP_PORT" --threads "$LOADGEN_NCPU" \
    >"$WORK/servers.log" 2>&1 &
PIDS+=($!)
wait_port "$ECHO_PORT" && wait_port "$HTTP_PORT" || { cat "$WORK/servers.log" >&2; die "test servers did not start"; }

SY_PID=""; HAP_PID=""
start_proxy() { # name: start it (pinned), wait for all its ports, check that it forwards
    local name="$1" pid port
    if [[ "$name" == switchyard ]]; then
        SWITCHYARD_LOG="${SWITCHYARD_LOG:-error}" taskset -c "$PROXY_CPUS" "$SWITCHYARD_BIN" -f "$WORK/switchyard.cfg" \
            >>"$WORK/switchyard.log" 2>&1 &
        SY_PID=$!; pid=$SY_PID
    else
        taskset -c "$PROXY_CPUS" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg" >>"$WORK/haproxy.log" 2>&1 &
        HAP_PID=$!; pid=$HAP_PID
    fi
    PIDS+=("$pid")
    for port in "${PG_PORT_OF[$name]}" "${IPERF_PORT_OF[$name]}" "${ECHO_PORT_OF[$name]}" "${HTTP_PORT_OF[$name]}"; do
        if ! wait_port "$port" || ! kill -0 "$pid" 2>/dev/null; then
            cat "$WORK/$name.log" >&2
            die "$name did not start (config: $WORK/$name.cfg)"
        fi
    done
}

stop_proxy() { # name: stop it and wait until it has exited
    local name="$1" pid
    if [[ "$name" == switchyard ]]; then pid="$SY_PID"; else pid="$HAP_PID"; fi
    [[ -n "$pid" ]] || return 0
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget_pid "$pid"
}

forget_pid() { # pid: no longer ours to stop on exit (it has been waited for)
    local p keep=()
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

probe() { # path: one echo round trip and one HTTP request through it
    "$BENCH_BIN" latency --target "127.0.0.1:${ECHO_PORT_OF[$1]}" -c 1 -r 100 -d 0.1 --warmup 0 >/dev/null 2>&1 &&
        { [[ "$HTTP" != 1 ]] || python3 - "${HTTP_PORT_OF[$1]}" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=5) as r:
    sys.exit(0 if r.status == 200 and r.read() == b"hello, world\n" else 1)
EOF
        }
}

for name in switchyard haproxy; do
    log "starting $name on :${PG_PORT_OF[$name]} (pg), :${IPERF_PORT_OF[$name]} (iperf), :${ECHO_PORT_OF[$name]} (echo), :${HTTP_PORT_OF[$name]} (http)"
    start_proxy "$name"
done
for name in direct switchyard haproxy; do
    out="$("$PSQL" -X -A -t -p "${PG_PORT_OF[$name]}" -c 'select 42' 2>&1)"
    [[ "$out" == 42 ]] || { cat "$WORK/$name.log" >&2 2>/dev/null; die "query through $name failed: $out"; }
    probe "$name" || { cat "$WORK/$name.log" >&2 2>/dev/null; die "echo/HTTP through $name failed"; }
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
    local port="${PG_PORT_OF[$path]}" out tps lat pid c0="" c1="" txns per=""
    if ! alive "$path"; then
        log "$tag $path rep $rep: proxy is not running"; record "$tag.tps" "$path" "$rep" FAIL; return
    fi
    pid="$(proxy_pid "$path")"
    [[ -n "$pid" ]] && c0="$(cpu_ticks "$pid")"
    out="$("$PGBENCH" -n -p "$port" -T "$DURATION" -j "$PGB_JOBS" "$@" 2>&1)"
    [[ -n "$pid" ]] && c1="$(cpu_ticks "$pid")"
    printf '%s\n' "$out" >"$WORK/pgbench-$tag-$path-$rep.log"
    tps="$(awk '/^tps = / { print $3; exit }' <<<"$out")"
    lat="$(awk '/^latency average = / { print $4; exit }' <<<"$out")"
    txns="$(awk '/^number of transactions actually processed: / { print $6; exit }' <<<"$out")"
    # The proxy's own CPU time per transaction: its cost, whatever share of the two
    # cores pgbench and PostgreSQL leave it.
    per="$(per_unit_us "$c0" "$c1" "$txns")"
    [[ -n "$per" ]] && record "$tag.cpu" "$path" "$rep" "$per"
    if [[ -z "$tps" ]] || grep -qE 'aborted|error' <<<"$out"; then
        log "$tag $path rep $rep: pgbench failed ($(grep -m1 -iE 'error|abort|fatal' <<<"$out"))"
        [[ -n "$tps" ]] || tps=FAIL
    fi
    record "$tag.tps" "$path" "$rep" "${tps:-FAIL}"
    [[ -n "$lat" ]] && record "$tag.lat" "$path" "$rep" "$lat"
    printf '  %-9s %-10s rep %d: %12s tps   latency avg %s ms%s\n' "$tag" "$path" "$rep" "${tps:-FAIL}" "${lat:-NA}" \
        "${per:+   proxy CPU $per us/transaction}"
}

per_unit_us() { # cpu-ticks-before cpu-ticks-after units -> µs of CPU per unit (nothing if unknown)
    [[ -n "$1" && -n "$2" && -n "${3:-}" && "${3:-0}" != 0 ]] || return 0
    awk -v t=$(($2 - $1)) -v hz="$CLK_TCK" -v n="$3" 'BEGIN { printf "%.2f", 1e6 * t / hz / n }'
}

proxy_pid() { # path -> pid of its proxy (nothing for direct)
    case "$1" in switchyard) echo "$SY_PID" ;; haproxy) echo "$HAP_PID" ;; esac
}

run_iperf() { # tag path rep parallel -> records Gbit/s and, for proxies, CPU ms per Gbit
    local tag="$1" path="$2" rep="$3" par="$4"
    local port="${IPERF_PORT_OF[$path]}" out="" gbps="" gbit="" try pid c0 c1 cpu_ms="" per=""
    if ! alive "$path"; then
        log "$tag $path rep $rep: proxy is not running"; record "$tag" "$path" "$rep" FAIL; return
    fi
    pid="$(proxy_pid "$path")"
    for try in 1 2 3; do   # the iperf3 server serves one test at a time; retry if still busy
        [[ -n "$pid" ]] && c0="$(cpu_ticks "$pid")"
        loadgen_pin iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -P "$par" -J >"$WORK/iperf-$tag-$path-$rep.json" 2>&1
        [[ -n "$pid" ]] && c1="$(cpu_ticks "$pid")"
        # received Gbit/s and Gbit received in total
        out="$(python3 - "$WORK/iperf-$tag-$path-$rep.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))["end"]["sum_received"]
    print("%.3f %.4f" % (d["bits_per_second"] / 1e9, d["bytes"] * 8 / 1e9))
except Exception:
    pass
EOF
)"
        read -r gbps gbit <<<"$out"
        [[ -n "$gbps" ]] && break
        sleep 1
    done
    record "$tag" "$path" "$rep" "${gbps:-FAIL}"
    if [[ -n "$pid" && -n "$gbit" && -n "$c0" && -n "$c1" ]]; then
        # CPU time of the proxy process (all threads, user + system) per Gbit carried
        cpu_ms="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", 1000 * t / hz }')"
        per="$(awk -v ms="$cpu_ms" -v g="$gbit" 'BEGIN { if (g > 0) printf "%.2f", ms / g }')"
        record "$tag.cpu" "$path" "$rep" "${per:-FAIL}"
    fi
    printf '  %-9s %-10s rep %d: %12s Gbit/s%s\n' "$tag" "$path" "$rep" "${gbps:-FAIL}" \
        "${per:+   proxy CPU ${cpu_ms} ms for ${gbit} Gbit = ${per} ms/Gbit}"
    sleep 0.5
}

run_connrate() { # path rep -> connections/s and, for proxies, CPU µs per connection
    local path="$1" rep="$2" out cps errs pid c0="" c1="" per=""
    if ! alive "$path"; then
        log "conns $path rep $rep: proxy is not running"; record conns "$path" "$rep" FAIL; return
    fi
    pid="$(proxy_pid "$path")"
    [[ -n "$pid" ]] && c0="$(cpu_ticks "$pid")"
    out="$(loadgen_pin "$BENCH_BIN" connrate --target "127.0.0.1:${ECHO_PORT_OF[$path]}" -c "$CONN_CLIENTS" -d "$DURATION" \
        --size "$MSG_SIZE" --sources "$SOURCES" --threads "$LOADGEN_NCPU" 2>&1)"
    [[ -n "$pid" ]] && c1="$(cpu_ticks "$pid")"
    printf '%s\n' "$out" >"$WORK/conns-$path-$rep.log"
    cps="$(kv conns_per_sec "$out")"; errs="$(kv errors "$out")"
    [[ -n "$cps" ]] || log "conns $path rep $rep: failed: $out"
    [[ -n "$errs" && "$errs" != 0 ]] && log "conns $path rep $rep: $errs failed connections"
    record conns "$path" "$rep" "${cps:-FAIL}"
    # The load generator's CPU can bound connections/s for every path alike; the proxy's own
    # CPU per connection still tells the proxies apart.
    per="$(per_unit_us "$c0" "$c1" "$(kv completed "$out")")"
    [[ -n "$per" ]] && record conns.cpu "$path" "$rep" "$per"
    printf '  %-9s %-10s rep %d: %12s conn/s   (%s errors)%s\n' conns "$path" "$rep" "${cps:-FAIL}" "${errs:-?}" \
        "${per:+   proxy CPU ${per} us/connection}"
    sleep 0.5
}

# Per path:rep, the latency test's last attempt: "p50 p99 p99.9 sender-lag" (microseconds).
declare -A LAT_RESULT=()
LAT_RERUNS=0

run_latency() { # path rep -> LAT_RESULT[path:rep]
    local path="$1" rep="$2" out p50 p99 p999 lost lag
    if ! alive "$path"; then
        log "lat $path rep $rep: proxy is not running"; LAT_RESULT["$path:$rep"]="FAIL FAIL FAIL NA"; return
    fi
    out="$(loadgen_pin "$BENCH_BIN" latency --target "127.0.0.1:${ECHO_PORT_OF[$path]}" -c "$LAT_CONNS" -r "$LAT_RATE" \
        -d "$DURATION" --warmup 0.5 --size "$MSG_SIZE" 2>&1)"
    printf '%s\n' "$out" >>"$WORK/lat-$path-$rep.log"
    p50="$(kv p50_us "$out")"; p99="$(kv p99_us "$out")"; p999="$(kv p999_us "$out")"
    lost="$(kv lost "$out")"; lag="$(kv sched_lag_p99_us "$out")"
    [[ -n "$p50" ]] || log "lat $path rep $rep: failed: $out"
    [[ -n "$lost" && "$lost" != 0 ]] && log "lat $path rep $rep: $lost requests without an answer"
    LAT_RESULT["$path:$rep"]="${p50:-FAIL} ${p99:-FAIL} ${p999:-FAIL} ${lag:-NA}"
    printf '  %-9s %-10s rep %d: p50 %8s us  p99 %8s us  p99.9 %8s us   (sender lag p99 %s us)\n' \
        lat "$path" "$rep" "${p50:-FAIL}" "${p99:-FAIL}" "${p999:-FAIL}" "${lag:-?}"
}

# The load generator measures how late its own sends leave (sender lag): when the machine is
# busy elsewhere (the VM's neighbours, a stray daemon) that lag rises and the run's tail
# percentiles measure the machine, not the path. A run whose sender-lag p99 exceeds the bound
# (BENCH_LAT_MAX_LAG, else 1.5 x the quietest run's, at least 30 us) is run again, up to
# BENCH_LAT_RETRIES times; the last attempt counts, whatever its lag.
rerun_noisy_latency() {
    local bound key path rep lag attempt
    bound="${BENCH_LAT_MAX_LAG:-}"
    if [[ -z "$bound" ]]; then
        bound="$(for key in "${!LAT_RESULT[@]}"; do read -r _ _ _ lag <<<"${LAT_RESULT[$key]}"; echo "$lag"; done |
            awk '$1 + 0 > 0 && (m == "" || $1 + 0 < m) { m = $1 + 0 } END { if (m != "") { b = 1.5 * m; if (b < 30) b = 30; printf "%.1f\n", b } }')"
    fi
    [[ -n "$bound" ]] || return
    for rep in $(seq 1 "$REPS"); do
        for path in "${PATHS[@]}"; do
            for attempt in $(seq 1 "$LAT_RETRIES"); do
                read -r _ _ _ lag <<<"${LAT_RESULT["$path:$rep"]}"
                awk -v l="$lag" -v b="$bound" 'BEGIN { exit !(l != "NA" && l + 0 > b + 0) }' || break
                log "lat $path rep $rep: sender lag p99 $lag us > $bound us (the machine was busy): run again ($attempt of $LAT_RETRIES)"
                LAT_RERUNS=$((LAT_RERUNS + 1))
                sleep 1
                run_latency "$path" "$rep"
            done
        done
    done
}

record_latency() {
    local key path rep p50 p99 p999 lag
    for rep in $(seq 1 "$REPS"); do
        for path in "${PATHS[@]}"; do
            read -r p50 p99 p999 lag <<<"${LAT_RESULT["$path:$rep"]:-FAIL FAIL FAIL NA}"
            record lat.p50 "$path" "$rep" "$p50"
            record lat.p99 "$path" "$rep" "$p99"
            record lat.p999 "$path" "$rep" "$p999"
            [[ "$lag" != NA ]] && record lat.lag "$path" "$rep" "$lag"
        done
    done
}

wrk_ms() { # wrk latency text (e.g. 512.00us, 1.20ms, 2.00s) -> milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
                           else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.3f\n", n }'
}

run_wrk() { # path rep -> requests/s and p99 latency
    local path="$1" rep="$2" out rps p99 errs pid c0="" c1="" reqs per=""
    if ! alive "$path"; then
        log "http $path rep $rep: proxy is not running"; record http.rps "$path" "$rep" FAIL; return
    fi
    pid="$(proxy_pid "$path")"
    [[ -n "$pid" ]] && c0="$(cpu_ticks "$pid")"
    out="$(loadgen_pin wrk -t "$WRK_THREADS" -c "$WRK_CONNS" -d "${DURATION}s" --latency "http://127.0.0.1:${HTTP_PORT_OF[$path]}/" 2>&1)"
    [[ -n "$pid" ]] && c1="$(cpu_ticks "$pid")"
    reqs="$(awk '/ requests in / { print $1; exit }' <<<"$out")"
    per="$(per_unit_us "$c0" "$c1" "$reqs")"
    [[ -n "$per" ]] && record http.cpu "$path" "$rep" "$per"
    printf '%s\n' "$out" >"$WORK/wrk-$path-$rep.log"
    rps="$(awk '/^Requests\/sec:/ { print $2; exit }' <<<"$out")"
    p99="$(awk '$1 == "99%" { print $2; exit }' <<<"$out")"
    [[ -n "$p99" ]] && p99="$(wrk_ms "$p99")"
    errs="$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | paste -sd';')"
    [[ -n "$rps" ]] || log "http $path rep $rep: wrk failed: $(tail -2 <<<"$out")"
    [[ -n "$errs" ]] && log "http $path rep $rep: $errs"
    record http.rps "$path" "$rep" "${rps:-FAIL}"
    [[ -n "$p99" ]] && record http.p99 "$path" "$rep" "$p99"
    printf '  %-9s %-10s rep %d: %12s req/s   p99 %s ms%s\n' http "$path" "$rep" "${rps:-FAIL}" "${p99:-NA}" \
        "${per:+   proxy CPU $per us/request}"
    sleep 0.5
}

established_to() { # port -> number of established connections to 127.0.0.1:port
    ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l
}

run_idle() { # path rep [http] -> KiB of proxy RSS per idle proxied connection (fresh proxy process)
    # With "http": keep-alive clients of the mode http section, each after one GET.
    local path="$1" rep="$2" http="${3:-}" pid r0 r1 hp out connected per i key port
    local -a hold_args=()
    if [[ "$http" == http ]]; then
        key=idleh; port="${HTTP_PORT_OF[$path]}"; hold_args=(--http)
    else
        key=idle; port="${ECHO_PORT_OF[$path]}"
    fi
    # a fresh process, so that memory kept by earlier tests (allocator, pools) does not hide growth
    stop_proxy "$path"
    start_proxy "$path"
    probe "$path" || log "idle $path rep $rep: probe through the fresh proxy failed"
    pid="$(proxy_pid "$path")"
    sleep 0.5
    r0="$(rss_kib "$pid")"
    loadgen_pin "$BENCH_BIN" hold --target "127.0.0.1:$port" -n "$IDLE_CONNS" --sources "$SOURCES" \
        --hold $((DURATION + 60)) "${hold_args[@]}" >"$WORK/$key-$path-$rep.log" 2>&1 &
    hp=$!; PIDS+=("$hp")
    for i in $(seq 600); do   # up to 60 s to open them all
        grep -q '^ready' "$WORK/$key-$path-$rep.log" 2>/dev/null && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    out="$(grep -m1 '^ready' "$WORK/$key-$path-$rep.log")"
    connected="$(kv connected "$out")"
    sleep 1   # let the proxy settle (lazy frees, timers)
    r1="$(rss_kib "$pid")"
    kill "$hp" 2>/dev/null; wait "$hp" 2>/dev/null; forget_pid "$hp"
    if [[ -z "$connected" || "$connected" == 0 || -z "$r0" || -z "$r1" ]]; then
        log "$key $path rep $rep: failed ($(tail -2 "$WORK/$key-$path-$rep.log"))"
        record "$key.kib" "$path" "$rep" FAIL
        return
    fi
    (( connected < IDLE_CONNS )) && log "$key $path rep $rep: only $connected of $IDLE_CONNS connections opened: $out"
    per="$(awk -v a="$r0" -v b="$r1" -v n="$connected" 'BEGIN { printf "%.2f", (b - a) / n }')"
    record "$key.kib" "$path" "$rep" "$per"
    if [[ "$key" == idle ]]; then
        record idle.base "$path" "$rep" "$(awk -v a="$r0" 'BEGIN { printf "%.1f", a / 1024 }')"
    fi
    printf '  %-9s %-10s rep %d: %12s KiB/conn   (RSS %s KiB idle, %s KiB with %s connections)\n' \
        "$key" "$path" "$rep" "$per" "$r0" "$r1" "$connected"
    # let the connections drain before the next measurement
    for i in $(seq 200); do (( $(established_to "$port") < 10 )) && break; sleep 0.1; done
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
# Steal time: on a virtual machine, the time the host ran something else while a vCPU had work.
cpu_times() { awk '/^cpu / { total = 0; for (i = 2; i <= 9; i++) total += $i; print $9, total }' /proc/stat; }  # guest time is already in user time
CPU_START="$(cpu_times)"
T0=$SECONDS

if (( WARMUP > 0 )); then
    log "warm-up: pgbench -S ${WARMUP}s per path (not recorded)"
    for path in "${PATHS[@]}"; do
        "$PGBENCH" -n -S -M prepared -c "$PGB_CLIENTS" -j "$PGB_JOBS" -T "$WARMUP" -p "${PG_PORT_OF[$path]}" >/dev/null 2>&1
    done
fi

echo "== 1. pgbench -S -M prepared -c $PGB_CLIENTS -j $PGB_JOBS -T $DURATION (persistent connections)"
for rep in $(seq 1 "$REPS"); do
    for path in $(paths_of_rep "$rep"); do run_pgbench pgS "$path" "$rep" -S -M prepared -c "$PGB_CLIENTS"; done
done

echo "== 2. pgbench -S -C -c $PGB_C_CLIENTS -j $PGB_JOBS -T $DURATION (new connection per transaction)"
for rep in $(seq 1 "$REPS"); do
    for path in $(paths_of_rep "$rep"); do run_pgbench pgSC "$path" "$rep" -S -C -c "$PGB_C_CLIENTS"; done
done

echo "== 3. iperf3 -t $DURATION -P 1 / -P 4 (bulk TCP; proxy CPU time per Gbit)"
for par in 1 4; do
    for rep in $(seq 1 "$REPS"); do
        for path in $(paths_of_rep "$rep"); do run_iperf "iperfP$par" "$path" "$rep" "$par"; done
    done
done

echo "== 4. short TCP connections: $CONN_CLIENTS clients x (connect, ${MSG_SIZE} B request, echo, close) for ${DURATION}s"
for rep in $(seq 1 "$REPS"); do
    for path in $(paths_of_rep "$rep"); do run_connrate "$path" "$rep"; done
done

echo "== 5. open-loop latency: $LAT_RATE req/s of ${MSG_SIZE} B over $LAT_CONNS persistent connections for ${DURATION}s"
for rep in $(seq 1 "$REPS"); do
    for path in $(paths_of_rep "$rep"); do run_latency "$path" "$rep"; done
done
rerun_noisy_latency
record_latency

if [[ "$HTTP" == 1 ]]; then
    echo "== 6. HTTP: wrk -t $WRK_THREADS -c $WRK_CONNS -d ${DURATION}s, mode http on both proxies"
    for rep in $(seq 1 "$REPS"); do
        for path in $(paths_of_rep "$rep"); do run_wrk "$path" "$rep"; done
    done
fi

echo "== 7. memory: $IDLE_CONNS idle proxied connections, RSS growth of a fresh proxy process"
for rep in $(seq 1 "$REPS"); do
    for path in switchyard haproxy; do run_idle "$path" "$rep"; done
done
if [[ "$HTTP" == 1 ]]; then
    echo "== 8. memory: $IDLE_CONNS idle keep-alive HTTP clients (one GET each), RSS growth of a fresh proxy process"
    for rep in $(seq 1 "$REPS"); do
        for path in switchyard haproxy; do run_idle "$path" "$rep" http; done
    done
fi

ELAPSED=$((SECONDS - T0))
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
STEAL_PCT="$(echo "$CPU_START $(cpu_times)" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? 100 * ($3 - $1) / d : 0) }')"
alive switchyard || log "WARNING: switchyard exited during the run (log: $WORK/switchyard.log)"
alive haproxy || log "WARNING: haproxy exited during the run (log: $WORK/haproxy.log)"

# ---------------------------------------------------------------------------- summary
# metric key | label | unit | higher is better? | "tail" = left out of the noise warning (tail
# percentiles vary far more from run to run than medians and rates; read their raw runs)
METRICS=(
    "pgS.tps|pgbench -S TPS (c=$PGB_CLIENTS)|tps|1"
    "pgS.lat|pgbench -S avg latency (c=$PGB_CLIENTS)|ms|0"
    "pgS.cpu|proxy CPU per transaction (pgbench -S)|us|0"
    "pgSC.tps|pgbench -S -C TPS (c=$PGB_C_CLIENTS)|tps|1"
    "iperfP1|iperf3 -P 1|Gbit/s|1"
    "iperfP4|iperf3 -P 4|Gbit/s|1"
    "iperfP1.cpu|proxy CPU per Gbit (iperf3 -P 1)|ms/Gbit|0"
    "iperfP4.cpu|proxy CPU per Gbit (iperf3 -P 4)|ms/Gbit|0"
    "conns|short TCP conns (c=$CONN_CLIENTS)|conn/s|1"
    "conns.cpu|proxy CPU per short connection|us|0"
    "lat.p50|echo latency p50 ($LAT_RATE/s)|us|0"
    "lat.p99|echo latency p99 ($LAT_RATE/s)|us|0|tail"
    "lat.p999|echo latency p99.9 ($LAT_RATE/s)|us|0|tail"
    "lat.lag|load generator's sender lag p99 (noise)|us|0|tail"
)
if [[ "$HTTP" == 1 ]]; then
    METRICS+=(
        "http.rps|HTTP wrk req/s (c=$WRK_CONNS)|req/s|1"
        "http.p99|HTTP wrk p99 (closed loop)|ms|0|tail"
        "http.cpu|proxy CPU per HTTP request|us|0"
    )
fi
METRICS+=("idle.kib|RSS per idle conn (n=$IDLE_CONNS)|KiB|0")
if [[ "$HTTP" == 1 ]]; then
    METRICS+=("idleh.kib|RSS per idle HTTP keep-alive client (n=$IDLE_CONNS)|KiB|0")
fi
METRICS+=("idle.base|proxy RSS, fresh, no conns|MiB|0")

declare -A MED
for m in "${METRICS[@]}"; do
    IFS='|' read -r key _ _ _ <<<"$m"
    for path in "${PATHS[@]}"; do
        # shellcheck disable=SC2086
        MED["$key:$path"]="$(median ${RAW["$key:$path"]:-})"
    done
done

table() { # style: text | md
    local style="$1" m key label unit hib d s h rounds
    if [[ "$style" == md ]]; then
        echo "| measurement | unit | direct | switchyard | haproxy | sy/direct | hap/direct | sy/hap | sy/hap by round (rounds sy better) |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    else
        printf '%-36s %-7s %10s %11s %10s %10s %11s %8s %7s\n' \
            measurement unit direct switchyard haproxy sy/direct hap/direct sy/hap better
        printf '%s\n' "---------------------------------------------------------------------------------------------------------------"
    fi
    for m in "${METRICS[@]}"; do
        IFS='|' read -r key label unit hib _ <<<"$m"
        d="${MED[$key:direct]}"; s="${MED[$key:switchyard]}"; h="${MED[$key:haproxy]}"
        rounds="$(paired "$key" "$hib")"
        if [[ "$style" == md ]]; then
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$unit" "$(fmt "$d")" "$(fmt "$s")" \
                "$(fmt "$h")" "$(ratio "$s" "$d")" "$(ratio "$h" "$d")" "$(ratio "$s" "$h")" "$rounds"
        else
            # the count alone: the ratios are in the report
            [[ "$rounds" == NA ]] || rounds="$(sed 's/.*(\(.*\))/\1/' <<<"$rounds")"
            printf '%-36s %-7s %10s %11s %10s %10s %11s %8s %7s\n' "$label" "$unit" "$(fmt "$d")" "$(fmt "$s")" \
                "$(fmt "$h")" "$(ratio "$s" "$d")" "$(ratio "$h" "$d")" "$(ratio "$s" "$h")" "$rounds"
        fi
    done
}

# Largest run-to-run spread of any cell: the noise floor of this run.
MAX_SPREAD="$(for m in "${METRICS[@]}"; do
    IFS='|' read -r key _ _ _ kind <<<"$m"
    [[ "$kind" == tail ]] && continue
    # shellcheck disable=SC2086
    for path in "${PATHS[@]}"; do spread ${RAW["$key:$path"]:-}; done
done | tr -d '%' | grep -E '^[0-9.]+$' | sort -g | tail -1)"
NOISE_NOTE=""
if [[ -n "$MAX_SPREAD" ]] && awk -v s="$MAX_SPREAD" 'BEGIN { exit !(s > 10) }'; then
    NOISE_NOTE="WARNING: run-to-run spread up to ${MAX_SPREAD}% (load average at start $LOAD_START, at end $LOAD_END); treat ratio differences smaller than that as noise (tail percentiles not counted: check their raw runs)"
fi

# Added latency: proxy median minus direct median, per percentile.
added() { # metric path -> microseconds added over direct
    awk -v p="${MED[$1:$2]}" -v d="${MED[$1:direct]}" 'BEGIN { if (p == "NA" || d == "NA") print "NA"; else printf "%.1f", p - d }'
}
ADDED_NOTE="added latency over direct (echo, $LAT_RATE req/s, medians): switchyard p50 +$(added lat.p50 switchyard) us, p99 +$(added lat.p99 switchyard) us, p99.9 +$(added lat.p999 switchyard) us; haproxy p50 +$(added lat.p50 haproxy) us, p99 +$(added lat.p99 haproxy) us, p99.9 +$(added lat.p999 haproxy) us"

echo
echo "== medians of $REPS interleaved runs, ${DURATION}s each (latency, CPU, memory: lower is better; everything else: higher)"
table text
echo "$ADDED_NOTE"
[[ -n "$NOISE_NOTE" ]] && echo "$NOISE_NOTE"
LAT_NOTE="latency runs run again because the load generator lagged (the machine was busy): $LAT_RERUNS"
echo "$LAT_NOTE"
echo "steal time during the measurements: ${STEAL_PCT}% of all CPU time"

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
    echo "  (only the bind ports differ; see below): tcp mode (one \`mode http\` section for wrk),"
    echo "  \`nbthread $THREADS\`, \`maxconn $MAXCONN\`, no logging, same timeouts, each pinned with"
    if [[ -n "$LOADGEN_CPUS" ]]; then
        echo "  \`taskset -c $PROXY_CPUS\`. The load generators and test servers (iperf3, wrk,"
        echo "  switchyard-bench, with $LOADGEN_NCPU worker thread(s)) are pinned to the other CPUs"
        echo "  (\`taskset -c $LOADGEN_CPUS\`, for every path, direct included); pgbench and PostgreSQL"
        echo "  are not pinned."
    else
        echo "  \`taskset -c $PROXY_CPUS\`. Clients and servers are not pinned."
    fi
    if (( KERNEL_FORWARD )); then
        echo "- **Switchyard's tcp sections have \`option kernel-forward\`** (BENCH_KERNEL_FORWARD=1): its"
        echo "  pgbench, iperf3, echo and short-connection sessions are forwarded by the kernel (a BPF"
        echo "  sockhash); HAProxy's configuration is unchanged."
    fi
    echo "- Each configuration is run $REPS times for ${DURATION}s, interleaved (direct, switchyard, haproxy,"
    echo "  then switchyard, haproxy, direct, …: the order rotates each rep, so that no path always"
    echo "  follows the same one) so that drift in machine load hits all paths alike;"
    echo "  the table shows the **median** of the $REPS runs. All raw runs are listed at the end."
    if (( WARMUP > 0 )); then
        echo "- Before measuring, an unrecorded ${WARMUP}s \`pgbench -S\` warm-up per path."
    fi
    echo "- Measurements:"
    echo "  1. \`pgbench -S -M prepared -c $PGB_CLIENTS -j $PGB_JOBS -T $DURATION\` (persistent connections,"
    echo "     scale $PGB_SCALE): TPS and average latency; for the proxies, their CPU time (utime + stime from"
    echo "     \`/proc/PID/stat\`, before/after) per transaction, in µs: the proxy's own cost, which TPS"
    echo "     hides when pgbench, PostgreSQL and the proxy compete for the same cores."
    echo "  2. \`pgbench -S -C -c $PGB_C_CLIENTS -j $PGB_JOBS -T $DURATION\` (a new connection per transaction): TPS."
    echo "  3. \`iperf3 -t $DURATION -P 1\` and \`-P 4\` (control + data connections all through the proxy):"
    echo "     receiver throughput in Gbit/s, and the proxy's CPU time (utime + stime of the process from"
    echo "     \`/proc/PID/stat\`, before/after) divided by the Gbit received: ms of CPU per Gbit."
    echo "  4. Short TCP connections (\`switchyard-bench connrate\`): $CONN_CLIENTS concurrent clients, each in a"
    echo "     loop: connect, send $MSG_SIZE bytes, read the echo, close, for ${DURATION}s, against an echo server;"
    echo "     client sockets spread over source addresses 127.0.0.1-$SOURCES. Connections/s, and for the"
    echo "     proxies their CPU time (\`/proc/PID/stat\`, before/after) per completed connection in µs."
    echo "  5. Open-loop latency (\`switchyard-bench latency\`): $LAT_RATE requests/s of $MSG_SIZE bytes, round robin"
    echo "     over $LAT_CONNS persistent connections to the echo server, sent on schedule whether or not"
    echo "     earlier answers arrived (no coordinated omission); latency from send to echo received,"
    echo "     first 0.5 s not recorded. p50, p99, p99.9 in µs."
    if [[ "$HTTP" == 1 ]]; then
        echo "  6. HTTP: \`wrk -t $WRK_THREADS -c $WRK_CONNS -d ${DURATION}s\` through a \`mode http\` listen section (keep-alive)"
        echo "     to a minimal HTTP/1.1 server (\`switchyard-bench serve --http\`, 13-byte body): requests/s"
        echo "     and wrk's p99 (closed loop: it hides queueing, unlike 5); the proxy's CPU time per request in µs."
    fi
    echo "  7. Memory: for each proxy a fresh process is started (same config), its VmRSS read from"
    echo "     \`/proc/PID/status\` after one probe, then $IDLE_CONNS connections are opened through it to the echo"
    echo "     server (one round trip each) and held idle; after 1 s VmRSS is read again."
    echo "     (RSS with connections − RSS before) / connections, in KiB per connection. Direct: NA."
    if (( IDLE_CONNS < IDLE_REQUESTED )); then
        echo "     ($IDLE_CONNS instead of $IDLE_REQUESTED connections: the open-files limit here is $NOFILE and"
        echo "     each proxied connection takes two descriptors in the proxy.)"
    fi
    if [[ "$HTTP" == 1 ]]; then
        echo "  8. The same with $IDLE_CONNS keep-alive clients of the \`mode http\` section, each held after one \`GET\`."
    fi
    echo "- PostgreSQL is a throwaway instance (fsync=off, synchronous_commit=off, full_page_writes=off,"
    echo "  max_connections=300)."
    echo "- Ratios: sy/direct and hap/direct are the fraction of direct performance each proxy keeps"
    echo "  (for latency, CPU and memory: the multiple of direct); sy/hap compares Switchyard against"
    echo "  HAProxy (>1 is better for Switchyard for TPS, Gbit/s, conn/s and req/s; <1 is better for"
    echo "  latency, CPU per Gbit and memory). sy/hap by round: each rep's Switchyard value over the"
    echo "  HAProxy value of the same rep (the two ran one after the other, under the same load), and"
    echo "  in how many rounds Switchyard was the better: a difference the rounds disagree on is noise."
    echo
    echo "## Results (medians)"
    echo
    table md
    echo
    echo "${ADDED_NOTE^}."
    echo
    echo "${LAT_NOTE^}; the sender-lag row shows how quiet the machine was during the latency runs that count."
    if [[ -n "$NOISE_NOTE" ]]; then
        echo
        echo "**$NOISE_NOTE.**"
    fi
    echo
    echo "## Environment"
    echo
    echo "- Host: $(uname -srm), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
    echo "- Load average at start: $LOAD_START; at end: $LOAD_END (the machine may be shared; check the spread of raw runs)"
    echo "- Steal time during the measurements: ${STEAL_PCT}% of all CPU time (a virtual machine's vCPUs waiting for the host: the more, the noisier)"
    echo "- Measurement time: ${ELAPSED}s"
    echo "- switchyard: \`$SWITCHYARD_BIN\` ($(version_of "$SWITCHYARD_BIN" --version))"
    echo "- haproxy: \`$HAPROXY_BIN\` ($(version_of "$HAPROXY_BIN" -v))"
    echo "- PostgreSQL: $(version_of "$PG_BINDIR/postgres" --version); pgbench: $(version_of "$PGBENCH" --version)"
    echo "- iperf3: $(version_of iperf3 --version)"
    [[ "$HTTP" == 1 ]] && echo "- wrk: $(wrk -v 2>&1 | head -1)"
    echo "- Load generator: \`$BENCH_BIN\` (crates/switchyard-bench); open-files limit $NOFILE"
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
    echo
    echo "Latency runs (p50/p99/p99.9 in µs; sender lag = how late the generator sent, p99):"
    echo
    echo '```'
    for f in "$WORK"/lat-*.log; do [[ -e "$f" ]] && echo "$(basename "$f" .log): $(head -1 "$f")"; done
    echo '```'
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
