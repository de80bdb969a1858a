//! `switchyard demo`: the balancer, configured with ordinary HAProxy syntax, in front of three
//! built-in TCP echo backends, so a first run needs nothing installed.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const BACKENDS: [&str; 3] = ["db1", "db2", "db3"];

/// The demo configuration: a round-robin listener on `port` and a source-hash one on
/// `port + 1`, over echo backends on `port + 10 ..= port + 12`; the stats page and
/// Prometheus metrics on `port + 2`, the Runtime API on `port + 3`. Every port is on
/// loopback: the stats page has admin rights for local clients.
pub fn config(port: u16) -> String {
    let servers = |extra: &str| {
        BACKENDS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "    server {name} 127.0.0.1:{} {extra}\n",
                    port + 10 + i as u16
                )
                .replace(" \n", "\n")
            })
            .collect::<String>()
    };
    format!(
        "# Switchyard demo configuration (HAProxy syntax).
global
    maxconn 1000
    log stdout format raw local0 info
    # The Runtime API, as HAProxy's scripts use it: echo \"show servers state\" | nc ...
    stats socket ipv4@127.0.0.1:{api} level admin

defaults
    mode tcp
    log global
    option tcplog
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    timeout queue 10s

# Round robin: each new connection goes to the next backend.
listen demo_roundrobin
    bind 127.0.0.1:{rr}
    balance roundrobin
{rr_servers}
# Source hash: a client address always lands on the same backend.
listen demo_source
    bind 127.0.0.1:{src}
    balance source
    hash-type consistent
{src_servers}
# The live stats page (admin actions from this machine) and Prometheus metrics.
listen stats
    bind 127.0.0.1:{stats}
    mode http
    stats enable
    stats uri /
    stats refresh 2s
    stats admin if LOCALHOST
    http-request use-service prometheus-exporter if {{ path /metrics }}
",
        rr = port,
        src = port + 1,
        stats = port + 2,
        api = port + 3,
        rr_servers = servers("weight 1 maxconn 100 check inter 2s"),
        src_servers = servers(""),
    )
}

/// Starts the echo backends: each answers every line with its name and port.
pub async fn start_backends(port: u16) -> anyhow::Result<()> {
    for (i, name) in BACKENDS.iter().enumerate() {
        let backend_port = port + 10 + i as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], backend_port));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind demo backend {name} on {addr}"))?;
        let label = format!("backend-{name} at {backend_port}");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let label = label.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = format!("{label}: {line}\n");
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    Ok(())
}

pub fn print_banner(port: u16) {
    println!(
        "Switchyard demo is running (Ctrl-C to stop).

  Round robin over three echo backends:   nc 127.0.0.1 {rr}
  Source hash (same client, same server): nc 127.0.0.1 {src}
  Type a line: the backend that answers prefixes it with its name, e.g.
      backend-db1 at {b1}: hello

  Try a few connections in a row:
      for i in 1 2 3 4; do echo hello | nc -q1 127.0.0.1 {rr}; done

  Stats page (live, with admin actions):  http://127.0.0.1:{stats}/
  Prometheus metrics:                     curl http://127.0.0.1:{stats}/metrics
  Runtime API (HAProxy's commands):       echo \"show servers state\" | nc 127.0.0.1 {api}
      echo \"set server demo_roundrobin/db2 state maint\" | nc 127.0.0.1 {api}
      switchyard ctl --socket ipv4@127.0.0.1:{api} show stat

  In front of PostgreSQL: print this configuration, point a server line at your database
  (server pg1 127.0.0.1:5432 check), run it with switchyard -f FILE, then
      psql -h 127.0.0.1 -p {rr} -U postgres

  The configuration in use (plain HAProxy syntax): switchyard demo --print-config
  Traffic logs (HAProxy tcplog format) follow below.
",
        rr = port,
        src = port + 1,
        stats = port + 2,
        api = port + 3,
        b1 = port + 10,
    );
}
