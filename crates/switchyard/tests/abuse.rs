//! Abuse through the real binary: a connection flood twenty times `maxconn`, slowloris
//! clients on a stats page and on a `mode http` proxy, an admin socket bound for the whole
//! network, and attempts to raise a socket's level. Each test prints what it measured.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    check_config_output, cli, echo_server, free_port, require_command, ChildGuard, Switchyard,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// `CurrConns` from `show info`.
fn current_connections(stats: u16) -> u64 {
    cli(stats, "show info")
        .lines()
        .find_map(|l| l.strip_prefix("CurrConns: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// `stot` of a frontend from `show stat`: sessions it accepted.
fn frontend_sessions_total(stats: u16, frontend: &str) -> u64 {
    cli(stats, "show stat")
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.len() > 7 && f[0] == frontend && f[1] == "FRONTEND")
        .and_then(|f| f[7].parse().ok())
        .unwrap_or(u64::MAX)
}

/// The TCP sockets (not listeners) with one of `ports` at either end, from `ss -tano`, as
/// columns: state, receive queue, send queue, local address, peer address.
fn socket_table(ports: &[u16]) -> Vec<Vec<String>> {
    let out = std::process::Command::new("ss")
        .args(["-tano", "state", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("ss: {e}"));
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|c| c.len() >= 5 && c[0] != "LISTEN")
        .filter(|c| {
            ports.iter().any(|p| {
                let suffix = format!(":{p}");
                c[3].ends_with(&suffix) || c[4].ends_with(&suffix)
            })
        })
        .collect()
}

/// `(0x768, 47838)` from a `show sess` line `0x768: proto=tcpv4 src=127.0.0.1:47838 ...`.
fn session_id_and_client_port(line: &str) -> Option<(String, u16)> {
    let (id, rest) = line.split_once(": ")?;
    let src = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("src="))?;
    let port = src.rsplit_once(':')?.1.parse().ok()?;
    Some((id.to_owned(), port))
}

/// A socket of ours to `client_port` that is ESTABLISHED with empty queues while the
/// client's end of the pair is not open: see the flood test.
fn is_kernel_duplicate(sockets: &[Vec<String>], front: u16, client_port: u16) -> bool {
    let (ours, theirs) = (
        format!("127.0.0.1:{front}"),
        format!("127.0.0.1:{client_port}"),
    );
    let quiet_established = sockets
        .iter()
        .any(|c| c[0] == "ESTAB" && c[1] == "0" && c[2] == "0" && c[3] == ours && c[4] == theirs);
    let client_open = sockets
        .iter()
        .any(|c| c[3] == theirs && c[4] == ours && c[0] != "TIME-WAIT");
    quiet_established && !client_open
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// How one flood connection ended.
enum Flood {
    /// Echoed, after this long from the start of the flood.
    Served(Duration),
    /// The handshake never completed: its SYNs were dropped while the accept queue was full.
    NotAdmitted,
    /// Anything else (a reset, a wrong echo): must not happen.
    Broken(String),
}

#[test]
fn a_flood_of_twenty_times_maxconn_waits_in_the_backlog_with_bounded_memory() {
    const FLOOD: usize = 2_000;
    const MAXCONN: u64 = 100;
    let backend = echo_server();
    let (front, stats) = (free_port(), free_port());
    let cfg = format!(
        "global\n    stats socket ipv4@127.0.0.1:{stats} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n\
         \x20   timeout server 60s\n\
         listen echo\n    bind 127.0.0.1:{front}\n    maxconn {MAXCONN}\n\
         \x20   server s1 127.0.0.1:{backend}\n"
    );
    let mut proxy = Switchyard::start(BIN, &cfg).unwrap();
    let pid = proxy.pid();
    let (fds_before, rss_before) = switchyard_testkit::fds_and_rss(pid);
    let rt = runtime();
    let target = SocketAddr::from(([127, 0, 0, 1], front));
    let served_now = Arc::new(AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let flood_start = Instant::now();
    // Every client connects, sends a line, reads the echo, then holds its connection until
    // released: the first `maxconn` are served, the rest must wait (kernel backlog).
    let tasks: Vec<_> = (0..FLOOD)
        .map(|n| {
            let (served_now, mut released) = (served_now.clone(), released.clone());
            rt.spawn(async move {
                let line = format!("flood {n}\n");
                let connect = tokio::time::timeout(
                    Duration::from_secs(20),
                    tokio::net::TcpStream::connect(target),
                )
                .await;
                let mut stream = match connect {
                    Err(_) => return Flood::NotAdmitted,
                    Ok(Err(e)) => return Flood::Broken(format!("connect: {e}")),
                    Ok(Ok(stream)) => stream,
                };
                let exchange = async {
                    stream.write_all(line.as_bytes()).await?;
                    let mut echoed = vec![0; line.len()];
                    stream.read_exact(&mut echoed).await?;
                    Ok::<_, std::io::Error>(echoed)
                };
                match tokio::time::timeout(Duration::from_secs(60), exchange).await {
                    Ok(Ok(echoed)) if echoed == line.as_bytes() => {}
                    Ok(Ok(echoed)) => {
                        return Flood::Broken(format!("wrong echo {echoed:?}"));
                    }
                    Ok(Err(e)) => return Flood::Broken(e.to_string()),
                    Err(_) => return Flood::Broken("no echo within 60 s".into()),
                }
                let took = flood_start.elapsed();
                served_now.fetch_add(1, Ordering::Relaxed);
                let _ = released.wait_for(|r| *r).await;
                Flood::Served(took)
            })
        })
        .collect();

    // Held: the proxy serves `maxconn` at once; the others are not even accepted.
    std::thread::sleep(Duration::from_secs(3));
    let served_held = served_now.load(Ordering::Relaxed);
    let conns_held = current_connections(stats);
    let (fds_held, rss_held) = switchyard_testkit::fds_and_rss(pid);
    let _ = release.send(true);
    let outcomes: Vec<Flood> = rt.block_on(async {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(
                task.await
                    .unwrap_or_else(|e| Flood::Broken(format!("task: {e}"))),
            );
        }
        out
    });
    let mut served: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            Flood::Served(d) => Some(*d),
            _ => None,
        })
        .collect();
    served.sort();
    let not_admitted = outcomes
        .iter()
        .filter(|o| matches!(o, Flood::NotAdmitted))
        .count();
    let broken: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Flood::Broken(why) => Some(why),
            _ => None,
        })
        .collect();
    // Afterwards: slots all returned, descriptors back, still serving.
    let started = Instant::now();
    while current_connections(stats) != 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conns_after = current_connections(stats);
    // A session left over is a bug to chase (seen about once in 25 runs), unless it is the
    // kernel's: under this SYN flood connections are made from SYN cookies, and when a
    // client's handshake ACK and its first data segment are each taken for a valid cookie on
    // two CPUs at once, Linux can create two sockets for one connection and queue both for
    // accept. The client talks to one; the other never sees a packet and stays ESTABLISHED
    // until `timeout client`, in any proxy. Seen here as: the client's end in TIME-WAIT (it
    // closed through the first socket) and a second socket of ours for the same address pair
    // ESTABLISHED. Such a duplicate is told by all of: the frontend accepted more sessions
    // than there were clients, by as many as are left over; each left-over's socket is
    // ESTABLISHED with nothing queued; the client's end of its address pair is not open.
    let mut left_over = String::new();
    let mut kernel_duplicates = Vec::new();
    if conns_after != 0 {
        let sockets = socket_table(&[front, backend]);
        let sessions = cli(stats, "show sess all");
        let accepted = frontend_sessions_total(stats, "echo");
        let duplicates: Vec<(String, u16)> = sessions
            .lines()
            .filter_map(session_id_and_client_port)
            .filter(|(_, port)| is_kernel_duplicate(&sockets, front, *port))
            .collect();
        if duplicates.len() as u64 == conns_after && accepted == (FLOOD + duplicates.len()) as u64 {
            for (id, _) in &duplicates {
                cli(stats, &format!("shutdown session {id}"));
            }
            let started = Instant::now();
            while current_connections(stats) != 0 && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            conns_after = current_connections(stats);
            kernel_duplicates = duplicates;
        } else {
            left_over = format!(
                "{sessions}\n{accepted} sessions accepted for {FLOOD} clients\n\
                 sockets of :{front} and :{backend}:\n{}",
                sockets
                    .iter()
                    .map(|s| s.join(" "))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let (fds_after, rss_after) = switchyard_testkit::fds_and_rss(pid);
    let mut probe = TcpStream::connect(("127.0.0.1", front)).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    probe.write_all(b"after\n").unwrap();
    let mut echoed = [0u8; 6];
    probe.read_exact(&mut echoed).unwrap();
    eprintln!(
        "flood of {FLOOD} against maxconn {MAXCONN}: while held {served_held} served, CurrConns \
         {conns_held}, fds {fds_before} -> {fds_held}, VmRSS {rss_before} -> {rss_held} KiB; \
         after release {} served (last after {} ms), {not_admitted} never admitted (SYNs \
         dropped on the full backlog for 20 s), {} broken; after: CurrConns {conns_after}, fds \
         {fds_after}, VmRSS {rss_after} KiB; kernel duplicate connections shut down: {:?}",
        served.len(),
        served.last().map_or(0, |d| d.as_millis()),
        broken.len(),
        kernel_duplicates
    );
    assert!(
        served_held as u64 <= MAXCONN,
        "{served_held} served at once"
    );
    assert!(conns_held <= MAXCONN, "CurrConns {conns_held}");
    assert!(broken.is_empty(), "{:?}", &broken[..broken.len().min(5)]);
    assert!(
        served.len() >= MAXCONN as usize,
        "only {} served",
        served.len()
    );
    assert!(
        rss_held <= rss_before + 64 * 1024,
        "memory grew by {} KiB",
        rss_held - rss_before
    );
    assert_eq!(conns_after, 0, "sessions left over:\n{left_over}");
    assert!(fds_after <= fds_before + 2, "{fds_before} -> {fds_after}");
    assert_eq!(&echoed, b"after\n");
    drop(probe); // a graceful stop waits for open sessions
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}

/// Opens `count` slowloris connections to `port`: a request line and one more header every
/// 200 ms, never the blank line. Returns, for each, how long the server let it live (None:
/// still open after `limit`).
async fn slowloris(port: u16, count: usize, limit: Duration) -> Vec<Option<Duration>> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                else {
                    return Some(Duration::ZERO);
                };
                if stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
                    .await
                    .is_err()
                {
                    return Some(started.elapsed());
                }
                let mut buf = [0u8; 512];
                while started.elapsed() < limit {
                    let read =
                        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
                            .await;
                    match read {
                        // Closed (or answered with an error page, then closed).
                        Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                        Ok(Ok(_)) => {}
                        Err(_) => {
                            if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                return Some(started.elapsed());
                            }
                        }
                    }
                }
                None
            })
        })
        .collect();
    let mut out = Vec::with_capacity(count);
    for task in tasks {
        out.push(task.await.unwrap_or(None));
    }
    out
}

/// One complete request with `Connection: close`; the status line.
fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return "connect failed".into();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return "write failed".into();
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn slowloris_clients_are_cut_by_timeout_http_request_on_stats_and_http_frontends() {
    if !require_command("python3", "python3") {
        return;
    }
    const CLIENTS: usize = 100;
    let (stats_port, web_port, backend_port) = (free_port(), free_port(), free_port());
    let root = switchyard_testkit::TempDir::new("switchyard-abuse-www").unwrap();
    std::fs::write(root.path().join("index.html"), "hello\n").unwrap();
    let backend = ChildGuard::spawn(std::process::Command::new("python3").args([
        "-m",
        "http.server",
        &backend_port.to_string(),
        "--bind",
        "127.0.0.1",
        "--directory",
        root.path().to_str().unwrap(),
    ]))
    .unwrap();
    switchyard_testkit::wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], backend_port)),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", backend.output_so_far()));
    // `timeout client` is long on purpose: only `timeout http-request` may cut them.
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n\
         \x20   timeout server 60s\n    timeout http-request 1s\n\
         listen stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n\
         listen web\n    bind 127.0.0.1:{web_port}\n    server s1 127.0.0.1:{backend_port}\n"
    );
    let mut proxy = Switchyard::start(BIN, &cfg).unwrap();
    let rt = runtime();
    for (name, port, path) in [("stats", stats_port, "/stats"), ("http", web_port, "/")] {
        let attack = rt.spawn(slowloris(port, CLIENTS, Duration::from_secs(15)));
        // While they hold their connections, a real client is served.
        std::thread::sleep(Duration::from_millis(300));
        let status = get(port, path);
        let mut lived: Vec<Option<Duration>> = rt.block_on(attack).unwrap();
        lived.sort();
        let still_open = lived.iter().filter(|l| l.is_none()).count();
        let closed: Vec<Duration> = lived.iter().flatten().copied().collect();
        eprintln!(
            "slowloris on the {name} frontend: {CLIENTS} clients, {} cut (median after {} ms, \
             last after {} ms), {still_open} still open after 15 s; a normal request meanwhile: \
             {status}",
            closed.len(),
            closed.get(closed.len() / 2).map_or(0, |d| d.as_millis()),
            closed.last().map_or(0, |d| d.as_millis())
        );
        assert_eq!(
            still_open, 0,
            "{name}: slowloris clients kept their connections"
        );
        assert!(
            closed.iter().all(|d| *d < Duration::from_secs(8)),
            "{name}: cut too late: {closed:?}"
        );
        assert!(
            status.starts_with("HTTP/1.") && status.contains(" 200 "),
            "{name}: {status}\n{}",
            proxy.output_so_far()
        );
    }
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}

#[test]
fn an_admin_socket_open_to_the_network_is_accepted_with_a_warning_naming_its_line() {
    let (port, front, backend) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "global\n    stats socket ipv4@0.0.0.0:{port} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
         listen l\n    bind 127.0.0.1:{front}\n    server s 127.0.0.1:{backend}\n"
    );
    let out = check_config_output(BIN, &cfg).unwrap();
    let text = format!("{}{}", out.stdout, out.stderr);
    let want = format!(
        "{}:2: warning: 'stats socket' on 0.0.0.0:{port} with 'level admin' is reachable from \
         other hosts",
        out.path.display()
    );
    eprintln!("switchyard -c: {}", text.trim());
    assert_eq!(out.code, 0, "{text}");
    assert!(text.contains(&want), "{text}");
    // Bound to loopback, or at a lower level: nothing to say.
    for line in [
        format!("stats socket ipv4@127.0.0.1:{port} level admin"),
        format!("stats socket ipv4@0.0.0.0:{port} level operator"),
    ] {
        let quiet = cfg.replace(
            &format!("stats socket ipv4@0.0.0.0:{port} level admin"),
            &line,
        );
        let out = check_config_output(BIN, &quiet).unwrap();
        assert!(
            !format!("{}{}", out.stdout, out.stderr).contains("warning"),
            "{line}: {}{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn a_socket_never_answers_above_its_configured_level() {
    let backend = echo_server();
    let (front, user, operator) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "global\n    stats socket ipv4@127.0.0.1:{user} level user\n\
         \x20   stats socket ipv4@127.0.0.1:{operator} level operator\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
         listen be\n    bind 127.0.0.1:{front}\n    server s1 127.0.0.1:{backend}\n"
    );
    let _proxy = Switchyard::start(BIN, &cfg).unwrap();
    const DENIED: &str = "Permission denied\n\n";
    let mut attempts = 0;
    // Level changes in the same line or in prompt mode may only lower it (HAProxy's
    // `user`/`operator` commands); admin-only commands stay refused whatever comes first.
    for (port, level) in [(user, "user"), (operator, "operator")] {
        for line in [
            "disable server be/s1",
            "admin; disable server be/s1",
            "operator; admin; disable server be/s1",
            "experimental-mode on; disable server be/s1",
            "expert-mode on; disable server be/s1",
            "set server be/s1 state maint",
        ] {
            let reply = cli(port, line);
            attempts += 1;
            // `admin` and the mode switches are unknown here; the privileged command after
            // them is what must be refused.
            assert!(
                reply.ends_with(DENIED),
                "{level}: '{line}' answered {reply:?}"
            );
        }
    }
    // Nothing changed: the server is still ready.
    let state = cli(operator, "show servers state be");
    let row = state
        .lines()
        .find(|l| l.contains(" s1 "))
        .unwrap_or_default();
    let fields: Vec<&str> = row.split_whitespace().collect();
    // srv_admin_state (7th field) 0: no maintenance was set.
    assert_eq!(fields.get(6), Some(&"0"), "{state}");
    eprintln!(
        "user and operator sockets: {attempts} escalation attempts, each ended in 'Permission \
         denied', server untouched"
    );
}
