#!/usr/bin/env bash
# Capture HAProxy 2.6's `show stat` and Prometheus output for `mode http` proxies, after a
# known number of requests, as golden files for switchyard-api's and switchyard-stats'
# formatters (the TCP reference is scripts/capture-haproxy-golden.sh; this one is separate
# so that re-running it leaves those files alone).
#
# The real haproxy runs (foreground, loopback only, free ports) the config written here, in
# front of a small Python HTTP server (200 on `/`, 404 elsewhere); curl sends:
#   fe_web -> be_web/web1: 3 x GET / (200), 2 x GET /missing (404)
#   li_web -> w1:          1 x GET / (200)
#   li_down (its only server is DOWN): 1 x GET / (503 answered by haproxy itself)
# then the replies are saved to crates/switchyard-api/tests/golden/haproxy_http_<name>.txt
# and crates/switchyard-stats/tests/golden/haproxy_http_metrics.txt, with the config
# (haproxy_http_reference.cfg). Every process it starts is stopped on exit.
#
# usage: scripts/capture-haproxy-http-golden.sh [HAPROXY_BINARY]
set -euo pipefail

HAPROXY=${1:-${HAPROXY:-/usr/sbin/haproxy}}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/crates/switchyard-api/tests/golden"
OUT_STATS="$ROOT/crates/switchyard-stats/tests/golden"
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

for tool in "$HAPROXY" socat python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

read -r STATS FE_WEB LI_WEB LI_DOWN PROM WEB DEAD < <(python3 - <<'PY'
import socket
socks = []
for _ in range(7):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# The HTTP server: fixed bodies, no Date/Server headers, so byte counts do not vary.
python3 - "$WEB" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        ok = self.path == "/"
        body = b"hello\n" if ok else b"not found\n"
        self.send_response_only(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class S(HTTPServer):
    def handle_error(self, request, client_address):
        pass  # haproxy closing an idle pooled connection is not an error here

S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS+=($!)
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$WEB/" && break
    sleep 0.1
done

CFG="$WORK/haproxy.cfg"
cat >"$CFG" <<CFG
global
    stats socket ipv4@127.0.0.1:$STATS level admin
    nbthread 2
    maxconn 4000

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s

frontend fe_web
    bind 127.0.0.1:$FE_WEB
    default_backend be_web

backend be_web
    balance roundrobin
    server web1 127.0.0.1:$WEB

listen li_web
    bind 127.0.0.1:$LI_WEB
    server w1 127.0.0.1:$WEB

listen li_down
    bind 127.0.0.1:$LI_DOWN
    server d1 127.0.0.1:$DEAD check inter 1s

frontend prom
    bind 127.0.0.1:$PROM
    http-request use-service prometheus-exporter if { path /metrics }
CFG

"$HAPROXY" -c -f "$CFG" >/dev/null
"$HAPROXY" -db -f "$CFG" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

cli() { printf '%s\n' "$1" | socat -t 2 stdio "tcp4-connect:127.0.0.1:$STATS"; }

for _ in $(seq 50); do
    cli "show info" >/dev/null 2>&1 && break
    sleep 0.1
done
# d1's check must have failed three times (inter 1s, fall 3).
sleep 4

get() { curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$1$2"; }
for _ in 1 2 3; do get "$FE_WEB" /; done
for _ in 1 2; do get "$FE_WEB" /missing; done
get "$LI_WEB" /
get "$LI_DOWN" /
# HAProxy counts a response when its stream ends.
sleep 1

mkdir -p "$OUT" "$OUT_STATS"
cp "$CFG" "$OUT/haproxy_http_reference.cfg"
cap() { cli "$2" >"$OUT/haproxy_http_$1.txt"; }
for px in fe_web be_web li_web li_down; do
    cap "show_stat_$px" "show stat $px -1 -1"
    cap "show_stat_${px}_typed" "show stat $px -1 -1 typed"
    cap "show_stat_${px}_json" "show stat $px -1 -1 json"
done
curl -s "http://127.0.0.1:$PROM/metrics?scope=frontend&scope=backend&scope=server" \
    >"$OUT_STATS/haproxy_http_metrics.txt"

echo "captured into $OUT and $OUT_STATS (haproxy: $("$HAPROXY" -v | head -1))"
