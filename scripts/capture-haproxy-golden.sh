#!/usr/bin/env bash
# Capture HAProxy 2.6 Runtime API outputs as golden files for switchyard-api's formatters.
#
# Starts the real haproxy (foreground, -db, loopback only, free ports) on a reference config
# written here, waits for the health checks to settle, runs a fixed list of Runtime API
# commands through socat and saves each raw reply byte for byte to
# crates/switchyard-api/tests/golden/haproxy_<name>.txt, plus the config itself
# (haproxy_reference.cfg, with the ports actually used). Idempotent: every run rewrites the
# same files; every process it starts is stopped on exit.
#
# usage: scripts/capture-haproxy-golden.sh [HAPROXY_BINARY]
set -euo pipefail

HAPROXY=${1:-${HAPROXY:-/usr/sbin/haproxy}}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/crates/switchyard-api/tests/golden"
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in "$HAPROXY" socat python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

# Six distinct free loopback ports (the OS picks them; all sockets are held until all are known).
read -r STATS FE_PG LI_MYSQL LIVE DEAD SPARE < <(python3 - <<'PY'
import socket
socks = []
for _ in range(6):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# A live TCP server: accepts and holds every connection (health checks and one client session).
python3 - "$LIVE" <<'PY' &
import socket, sys, select
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(64)
conns = [srv]
while True:
    ready, _, _ = select.select(conns, [], [])
    for s in ready:
        if s is srv:
            c, _ = srv.accept()
            conns.append(c)
        else:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                conns.remove(s)
                s.close()
PY
PIDS+=($!)
# Wait until it listens, so pg1's first check does not fail.
for _ in $(seq 50); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $LIVE), 1)" 2>/dev/null && break
    sleep 0.1
done

CFG="$WORK/haproxy.cfg"
cat >"$CFG" <<CFG
global
    stats socket ipv4@127.0.0.1:$STATS level admin
    nbthread 2
    maxconn 4000

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s

frontend fe_pg
    bind 127.0.0.1:$FE_PG
    default_backend be_pg

backend be_pg
    balance roundrobin
    server pg1 127.0.0.1:$LIVE check inter 1s weight 10
    server pg2 127.0.0.1:$DEAD check weight 20
    server pg3 127.0.0.1:$LIVE backup weight 5
    server pg4 127.0.0.1:$LIVE disabled weight 3

listen li_mysql
    bind 127.0.0.1:$LI_MYSQL
    balance leastconn
    server my1 127.0.0.1:$LIVE check inter 1s

backend be_dynamic
    balance roundrobin
CFG

"$HAPROXY" -c -f "$CFG" >/dev/null
"$HAPROXY" -db -f "$CFG" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

cli() { printf '%s\n' "$1" | socat -t 2 stdio "tcp4-connect:127.0.0.1:$STATS"; }

for _ in $(seq 50); do
    cli "show info" >/dev/null 2>&1 && break
    sleep 0.1
done
# pg2's check (default inter 2s) must have failed and pg1/my1 passed.
sleep 5

mkdir -p "$OUT"
cp "$CFG" "$OUT/haproxy_reference.cfg"

cap() { # cap NAME COMMAND: save the raw reply to haproxy_NAME.txt
    cli "$2" >"$OUT/haproxy_$1.txt"
}

# Read-only views of the settled reference state.
cap show_info "show info"
cap show_info_typed "show info typed"
cap show_info_json "show info json"
cap show_stat "show stat"
cap show_stat_typed "show stat typed"
cap show_stat_json "show stat json"
cap show_stat_servers "show stat -1 4 -1"
cap show_stat_be_pg "show stat be_pg -1 -1"
cap show_stat_up "show stat -1 4 -1 up"
cap show_stat_no_maint "show stat -1 4 -1 no-maint"
cap show_stat_sid "show stat 3 4 2"
cap show_servers_state "show servers state"
cap show_servers_state_be_pg "show servers state be_pg"
cap show_servers_state_unknown "show servers state nope"
cap show_backend "show backend"
cap show_servers_conn "show servers conn"
cap show_servers_conn_be_pg "show servers conn be_pg"
cap show_servers_conn_unknown "show servers conn nope"
cap show_stat_unknown "show stat nope -1 -1"
cap show_stat_empty "show stat be_dynamic 4 -1"
cap show_stat_empty_typed "show stat be_dynamic 4 -1 typed"
cap show_stat_empty_json "show stat be_dynamic 4 -1 json"
cap show_stat_json_be_pg "show stat be_pg -1 -1 json"
cap help "help"
cap unknown_command "frobnicate"
cap get_weight "get weight be_pg/pg1"
cap get_weight_pg3 "get weight be_pg/pg3"
cap get_weight_unknown_backend "get weight nope/pg1"
cap get_weight_unknown_server "get weight be_pg/nope"
cap get_weight_no_slash "get weight be_pg"

# Dynamic server life cycle.
cap add_server "add server be_dynamic/s1 127.0.0.1:15000"
cap add_server_duplicate "add server be_dynamic/s1 127.0.0.1:15000"
cap add_server_unknown_backend "add server nope/s1 127.0.0.1:15000"
cap show_servers_state_after_add "show servers state"
cap show_servers_state_be_dynamic "show servers state be_dynamic"
cap show_stat_after_add "show stat be_dynamic -1 -1"
cap show_stat_after_add_typed "show stat be_dynamic -1 -1 typed"
cap set_server_state_ready "set server be_dynamic/s1 state ready"
cap set_weight "set weight be_dynamic/s1 50"
cap get_weight_after_set "get weight be_dynamic/s1"
cap set_weight_percent "set weight be_dynamic/s1 50%"
cap set_weight_invalid "set weight be_dynamic/s1 abc"
cap set_weight_unknown_backend "set weight nope/s1 5"
cap set_weight_unknown_server "set weight be_dynamic/nope 5"
cap set_server_addr "set server be_dynamic/s1 addr 127.0.0.2 port 15001"
cap set_server_addr_same "set server be_dynamic/s1 addr 127.0.0.2"
cap set_server_addr_only "set server be_dynamic/s1 addr 127.0.0.3"
cap set_server_addr_port_same "set server be_dynamic/s1 addr 127.0.0.3 port 15001"
cap set_server_addr_port_only "set server be_dynamic/s1 addr 127.0.0.3 port 15002"
cap set_server_weight "set server be_dynamic/s1 weight 7"
cap set_server_state_drain "set server be_dynamic/s1 state drain"
cap set_server_unknown_backend "set server nope/s1 state ready"
cap set_server_unknown_server "set server be_dynamic/nope state ready"
cap del_server_not_maint "del server be_dynamic/s1"
cap set_server_state_maint "set server be_dynamic/s1 state maint"
cap show_servers_state_maint "show servers state be_dynamic"
cap del_server "del server be_dynamic/s1"
cap del_server_unknown_server "del server be_dynamic/s1"
cap del_server_unknown_backend "del server nope/s1"
cap show_servers_state_after_del "show servers state be_dynamic"
cap del_server_static "del server be_pg/pg4"
cap set_weight_zero "set weight li_mysql/my1 0"
cap get_weight_zero "get weight li_mysql/my1"
cap show_stat_weight_zero "show stat li_mysql -1 -1"

# A server in maintenance that still carries a session: hold one client through fe_pg (pg1 is
# the only usable server, so it gets the session).
python3 - "$FE_PG" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
time.sleep(30)
PY
CLIENT=$!
PIDS+=($CLIENT)
sleep 1
cap set_server_pg1_maint "set server be_pg/pg1 state maint"
cap show_servers_conn_with_session "show servers conn be_pg"
cap del_server_has_sessions "del server be_pg/pg1"
kill "$CLIENT" 2>/dev/null || true

echo "captured $(ls "$OUT"/haproxy_*.txt | wc -l) replies into $OUT (haproxy: $("$HAPROXY" -v | head -1))"
