#!/usr/bin/env bash
# Re-capture the Runtime API golden transcripts in crates/switchyard-api/tests/golden/cli_*.txt
# from a real HAProxy (2.6 was used). Each file is: one header line
# "<level>\t<input, with \n escaped>" followed by the exact bytes HAProxy answered
# before closing the connection. Usage: scripts/capture-cli-golden.sh [path/to/haproxy]
set -euo pipefail
HAPROXY=${1:-/usr/sbin/haproxy}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/crates/switchyard-api/tests/golden
TMP=$(mktemp -d)
BASE=${CLI_GOLDEN_PORT:-19990}
trap 'kill "$(cat "$TMP/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
cat >"$TMP/h.cfg" <<CFG
global
    stats socket ipv4@127.0.0.1:$((BASE+1)) level admin
    stats socket ipv4@127.0.0.1:$((BASE+2)) level operator
    stats socket ipv4@127.0.0.1:$((BASE+3)) level user
    stats timeout 10s
defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend fe1
    bind 127.0.0.1:$((BASE+4))
    default_backend be1
backend be1
    server s1 127.0.0.1:$((BASE+5)) weight 10
    server s2 127.0.0.1:$((BASE+6)) check
    server s3 127.0.0.1:$((BASE+7)) agent-check agent-port $((BASE+8)) agent-inter 60s
CFG
"$HAPROXY" -f "$TMP/h.cfg" -D -p "$TMP/pid"
sleep 0.5

# name|level|input ("\n" in input means a newline; every input gets a final newline)
cases=$(cat <<'CASES'
unknown_foo|admin|foo
unknown_shw_info|admin|shw info
unknown_show_foo|admin|show foo
unknown_sho_stat|admin|sho stat
unknown_show_stats|admin|show stats
unknown_show_server_state|admin|show server state
unknown_set_srv|admin|set srv be1/s1 state ready
unknown_get_wieght|admin|get wieght be1/s1
unknown_disable_srv|admin|disable srv be1/s1
unknown_enable|admin|enable
unknown_show|admin|show
unknown_empty|admin|
help|admin|help
help_user|user|help
help_set|admin|help set
perm_user_set_server|user|set server be1/s1 state drain
perm_operator_set_server|operator|set server be1/s1 state drain
perm_user_clear_counters|user|clear counters
perm_operator_clear_counters_all|operator|clear counters all
perm_user_disable_server|user|disable server be1/s1
perm_user_set_weight|user|set weight be1/s1 5
perm_user_set_maxconn_global|user|set maxconn global 100
perm_user_shutdown_session|user|shutdown session 0x1
perm_user_add_server|user|add server be1/s9 127.0.0.1:1
perm_user_get_weight|user|get weight be1/s1
operator_clear_counters|operator|clear counters
set_server_noargs|admin|set server
set_server_noslash|admin|set server be1
set_server_nobackend|admin|set server nobe/s1 state ready
set_server_nosuchserver|admin|set server be1/nos state ready
set_server_nocommand|admin|set server be1/s1
set_server_badcommand|admin|set server be1/s1 foo
set_server_state_missing|admin|set server be1/s1 state
set_server_state_bad|admin|set server be1/s1 state foo
set_server_state_ready|admin|set server be1/s1 state ready
set_server_weight_missing|admin|set server be1/s1 weight
set_server_weight_bad|admin|set server be1/s1 weight abc
set_server_weight_big|admin|set server be1/s1 weight 300
set_server_weight_pct|admin|set server be1/s1 weight 50%
set_server_addr_missing|admin|set server be1/s1 addr
set_server_addr_bad|admin|set server be1/s1 addr foo.invalid.
set_server_addr_port_missing|admin|set server be1/s1 addr 127.0.0.2 port
set_server_addr_port_bad|admin|set server be1/s1 addr 127.0.0.2 port abc
set_server_addr_ok|admin|set server be1/s1 addr 127.0.0.1 port 19995
set_server_health_missing|admin|set server be1/s1 health
set_server_health_bad|admin|set server be1/s1 health foo
set_server_agent_missing|admin|set server be1/s2 agent
set_server_agent_bad|admin|set server be1/s3 agent foo
set_server_agent_missing_enabled|admin|set server be1/s3 agent
set_server_check_port_missing|admin|set server be1/s2 check-port
set_server_check_port_bad|admin|set server be1/s2 check-port abc
set_server_check_port_big|admin|set server be1/s2 check-port 70000
get_weight_missing|admin|get weight
get_weight_noslash|admin|get weight be1
get_weight_ok|admin|get weight be1/s1
set_weight_missing|admin|set weight be1/s1
set_weight_bad|admin|set weight be1/s1 abc
set_maxconn_server_missing|admin|set maxconn server be1/s1
set_maxconn_server_noarg|admin|set maxconn server
set_maxconn_server_bad|admin|set maxconn server be1/s1 abc
set_maxconn_frontend_missing|admin|set maxconn frontend
set_maxconn_frontend_novalue|admin|set maxconn frontend fe1
set_maxconn_frontend_nofe|admin|set maxconn frontend nofe 10
set_maxconn_frontend_bad|admin|set maxconn frontend fe1 abc
set_maxconn_global_missing|admin|set maxconn global
set_maxconn_global_bad|admin|set maxconn global abc
set_maxconn_bad|admin|set maxconn foo
set_timeout_missing|admin|set timeout
set_timeout_cli_missing|admin|set timeout cli
set_timeout_cli_bad|admin|set timeout cli abc
set_timeout_foo|admin|set timeout foo 5
enable_server_missing|admin|enable server
disable_server_missing|admin|disable server
enable_health_missing|admin|enable health
disable_health_missing|admin|disable health
enable_agent_missing|admin|enable agent
disable_agent_missing|admin|disable agent
disable_agent_nocheck|admin|disable agent be1/s1
shutdown_session_missing|admin|shutdown session
shutdown_session_bad|admin|shutdown session abc
shutdown_session_nosuch|admin|shutdown session 0x1234
shutdown_sessions_missing|admin|shutdown sessions server
del_server_missing|admin|del server
del_server_noslash|admin|del server be1
del_server_active|admin|del server be1/s1
add_server_missing|admin|add server
add_server_noaddr|admin|add server be1/s10
add_server_noslash|admin|add server s9 127.0.0.1:1
add_server_unknown_kw|admin|add server be1/s11 127.0.0.1:1 foo
add_server_bad_weight|admin|add server be1/s12 127.0.0.1:1 weight abc
add_server_weight_missing|admin|add server be1/s13 127.0.0.1:1 weight
add_server_bad_addr|admin|add server be1/s14 foo.invalid.:1
add_server_track|admin|add server be1/s15 127.0.0.1:1 track foo
add_server_ok|admin|add server be1/s16 127.0.0.1:1 weight 5 maxconn 10 backup disabled
add_server_exists|admin|add server be1/s16 127.0.0.1:1
add_server_unknown_kw2|admin|add server be1/s17 127.0.0.1:1 wieght 3
add_server_maxconn_missing|admin|add server be1/s18 127.0.0.1:1 maxconn
show_servers_state_nobe|admin|show servers state nobe
show_servers_conn_nobe|admin|show servers conn nobe
show_sess_bad|admin|show sess abc
show_stat_iid_only|admin|show stat 1
show_stat_bad|admin|show stat foo
show_stat_domain_bad|admin|show stat domain foo
perm_user_show_sess|user|show sess
perm_user_show_servers_state|user|show servers state
perm_user_show_info|user|show info
prompt_empty_line|admin|prompt\n\nquit
show_version|admin|show version
help_unknown|admin|help foo
unknown_shutdown_sesion|admin|shutdown sesion 0x1
unknown_clear_counter|admin|clear counter
unknown_del_srv|admin|del srv be1/s1
show_backend|admin|show backend
clear_counters|admin|clear counters
clear_counters_all|admin|clear counters all
chain_two|admin|get weight be1/s1; get weight be1/s2
chain_error|admin|get weight be1/s1;foo;get weight be1/s2
chain_trailing|admin|get weight be1/s1;
escape_semicolon|admin|get weight be1/s1\;x
escape_other|admin|get weight be1\/s1
quoted_arg|admin|get weight 'be1/s1'
prompt_session|admin|prompt\nget weight be1/s1\nfoo\nprompt\nget weight be1/s2
prompt_quit|admin|prompt\nquit\nget weight be1/s1
CASES
)

capture() { # level input
  local port
  case "$1" in admin) port=$((BASE+1));; operator) port=$((BASE+2));; user) port=$((BASE+3));; esac
  python3 - "$port" "$2" <<'PY'
import socket, sys
port, line = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(line.replace("\\n", "\n").encode() + b"\n")
s.settimeout(5)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except socket.timeout:
    out += b"<<TIMEOUT>>"
sys.stdout.buffer.write(out)
PY
}

while IFS='|' read -r name level input; do
  [ -n "$name" ] || continue
  { printf '%s\t%s\n' "$level" "$input"; capture "$level" "$input"; } >"$OUT/cli_$name.txt"
done <<<"$cases"

# An oversized request (20000 bytes, no newline within the 16 KiB buffer).
{ printf 'admin\t<20000 x "a" then newline>\n'
  python3 - $((BASE+1)) <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.sendall(b"a" * 20000 + b"\n")
except OSError:
    pass
s.settimeout(5)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except (socket.timeout, OSError) as e:
    out += ("<<%s>>" % type(e).__name__).encode()
sys.stdout.buffer.write(out)
PY
} >"$OUT/cli_oversized.txt"
echo "captured $(ls "$OUT"/cli_*.txt | wc -l) transcripts into $OUT"
