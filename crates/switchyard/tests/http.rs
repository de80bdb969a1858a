//! `mode http` through the real binary, driven by curl and wrk: per-request balancing over
//! keep-alive, `option forwardfor`, `option httplog`, cookie persistence, L7 hashing,
//! `http-server-close`, 502/503/504 pages, retries, upgrades
//! (WebSocket-style tunnels) and `timeout http-request` against a slow client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_testkit::{cli, free_port, http_get, http_get_path, http_port_server, Switchyard};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A small HTTP/1.1 server on a free loopback port: keep-alive, `Content-Length` bodies,
/// answers `NAME METHOD PATH` plus what it saw of `X-Forwarded-For`, `Cookie` and
/// `Connection`, the body's length and which of its connections (1, 2, …) carried it; `/set-cookie` sets `JSESSIONID`; `/slow` never answers; `/drop` closes
/// without answering; `/big/N` answers N bytes of [`pattern`]; `/close-after` answers, then
/// closes the connection without having said so; an `Upgrade` request gets `101` and an echo
/// of every byte after it.
struct Backend {
    port: u16,
    accepts: Arc<AtomicUsize>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepts);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let id = counted.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::spawn(move || serve_backend(name, id, stream));
            }
        });
        Backend { port, accepts }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

fn serve_backend(name: &str, id: usize, stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end().to_string();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |k: &str| {
            headers
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let length: usize = get("content-length").parse().unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Some(size) = path.strip_prefix("/big/") {
            let body = pattern(size.parse().unwrap_or(0));
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
                return;
            }
            continue;
        }
        match path.as_str() {
            "/slow" => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            "/drop" => return,
            _ => {}
        }
        if !get("upgrade").is_empty() {
            let _ = writer.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
            );
            let mut buf = [0u8; 1024];
            // Bytes the client sent right after its headers are already buffered.
            let pending = reader.buffer().to_vec();
            let _ = writer.write_all(&pending);
            let mut stream = reader.into_inner();
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let reply = format!(
            "{name} {method} {path} xff=[{}] cookie=[{}] connection=[{}] body={} conn={id}",
            get("x-forwarded-for"),
            get("cookie"),
            get("connection"),
            body.len()
        );
        let extra = if path == "/set-cookie" {
            "Set-Cookie: JSESSIONID=abc; Path=/\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{extra}\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || path == "/close-after" {
            return;
        }
    }
}

/// `len` bytes that are not all alike, so a lost or repeated piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// curl with `args`, returning (stdout, stderr); fails the test when curl cannot run.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed (scripts/ensure-deps.sh installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A plain `listen web` in front of one server: the setup of the tests that
/// look at a single client-server path.
fn start_web(server: &Backend) -> (u16, Switchyard) {
    let port = free_port();
    let sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    server a 127.0.0.1:{}\n",
        server.port
    ));
    (port, sy)
}

/// A `listen web` in front of `server s1 SERVER` with an admin stats socket; `global` adds
/// lines to the global section. Returns the frontend's and the stats socket's ports.
fn start_web_with_stats(global: &str, server: &str) -> (u16, u16, Switchyard) {
    let (front, stats) = (free_port(), free_port());
    let sy = Switchyard::start_with(
        BIN,
        &format!(
            "global\n{global}    stats socket ipv4@127.0.0.1:{stats} level admin\n{}listen web\n    \
             bind 127.0.0.1:{front}\n    server s1 {server}\n",
            DEFAULTS.trim_start_matches("global\n")
        ),
        &[],
        Some(&[front, stats]),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    (front, stats, sy)
}

/// The fields of `web/s1`'s line in `show servers conn web` (at least 14: up to `idle_cur`).
fn servers_conn(stats: u16) -> Vec<String> {
    let reply = cli(stats, "show servers conn web");
    let fields: Vec<String> = reply
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split(' ')
        .map(str::to_string)
        .collect();
    assert!(fields.len() >= 14, "{reply}");
    fields
}

fn start(config: &str) -> Switchyard {
    Switchyard::start(BIN, config).unwrap_or_else(|e| panic!("{e:#}"))
}

const DEFAULTS: &str = "global\n    log stdout format raw local0 info\n\
    defaults\n    mode http\n    log global\n    option httplog\n    timeout connect 1s\n\
    timeout client 10s\n    timeout server 10s\n    retries 2\n    option redispatch\n";

#[test]
fn requests_are_balanced_one_by_one_over_keep_alive_and_logged() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = free_port();
    let mut sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    balance roundrobin\n    option forwardfor\n\
         \x20   server a 127.0.0.1:{}\n    server b 127.0.0.1:{}\n",
        a.port, b.port
    ));
    let url = format!("http://127.0.0.1:{port}/item?id=1");
    // Four requests on one client connection (curl reuses it): round robin per request.
    let (out, err) = curl(&["-w", "\\n", &url, &url, &url, &url]);
    let replies: Vec<&str> = out.lines().collect();
    assert_eq!(replies.len(), 4, "{out}{err}");
    let servers: Vec<&str> = replies.iter().map(|r| &r[..1]).collect();
    assert!(
        servers == ["a", "b", "a", "b"] || servers == ["b", "a", "b", "a"],
        "{out}"
    );
    for reply in &replies {
        assert!(reply.contains(" GET /item?id=1 xff=[127.0.0.1]"), "{reply}");
        // Hop-by-hop headers stay on their hop.
        assert!(reply.contains("connection=[]"), "{reply}");
    }
    // One curl connection, and the servers' connections were reused between requests.
    assert!(
        a.accepts() + b.accepts() <= 3,
        "{} {}",
        a.accepts(),
        b.accepts()
    );
    sy.wait_for_output("\"GET /item?id=1 HTTP/1.1\"", Duration::from_secs(5))
        .unwrap();
    let log = sy.stdout_so_far();
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /item?id=1 HTTP/1.1\""))
        .unwrap();
    // `127.0.0.1:PORT [date] web web/a 0/0/0/0/0 200 NNN - - ---- 1/1/0/1/0 0/0 "GET ..."`
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "web", "{line}");
    assert!(fields[3] == "web/a" || fields[3] == "web/b", "{line}");
    assert_eq!(fields[4].split('/').count(), 5, "{line}");
    assert_eq!(fields[5], "200", "{line}");
    assert!(fields[6].parse::<u64>().unwrap() > 40, "{line}");
    assert_eq!(&fields[7..10], ["-", "-", "----"], "{line}");
}

#[test]
fn cookie_insert_keeps_a_client_on_its_server_and_hides_the_cookie() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = free_port();
    let mut sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    balance roundrobin\n\
         \x20   cookie SRV insert indirect nocache httponly\n\
         \x20   server a 127.0.0.1:{} cookie sa\n    server b 127.0.0.1:{} cookie sb\n",
        a.port, b.port
    ));
    let url = format!("http://127.0.0.1:{port}/");
    let (head, _) = curl(&["-i", &url]);
    let set_cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: srv="))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(set_cookie.contains("; path=/; HttpOnly"), "{set_cookie}");
    assert!(
        head.to_ascii_lowercase().contains("cache-control: private"),
        "{head}"
    );
    let value = set_cookie
        .split_once('=')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let home = if value == "sa" { "a" } else { "b" };
    let cookie = format!("SRV={value}; theme=dark");
    for _ in 0..6 {
        let (head, _) = curl(&["-i", "-H", &format!("Cookie: {cookie}"), &url]);
        let body = head.rsplit("\r\n\r\n").next().unwrap();
        assert!(body.starts_with(&format!("{home} ")), "{head}");
        // indirect: the server never sees the persistence cookie; no new cookie is set.
        assert!(body.contains("cookie=[theme=dark]"), "{body}");
        assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    }
    sy.wait_for_output("--V- ", Duration::from_secs(5)).unwrap();
    assert!(
        sy.stdout_so_far().contains("--NI "),
        "{}",
        sy.stdout_so_far()
    );
    // A cookie naming no server is ignored (and a fresh one is inserted).
    let (head, _) = curl(&["-i", "-H", "Cookie: SRV=nobody", &url]);
    assert!(
        head.to_ascii_lowercase().contains("set-cookie: srv=s"),
        "{head}"
    );
}

#[test]
fn cookie_prefix_and_rewrite_follow_the_servers_own_cookie() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (prefix, rewrite) = (free_port(), free_port());
    let _sy = start(&format!(
        "{DEFAULTS}listen prefixed\n    bind 127.0.0.1:{prefix}\n    cookie JSESSIONID prefix\n\
         \x20   server a 127.0.0.1:{pa} cookie sa\n    server b 127.0.0.1:{pb} cookie sb\n\
         listen rewritten\n    bind 127.0.0.1:{rewrite}\n    cookie JSESSIONID rewrite\n\
         \x20   server a 127.0.0.1:{pa} cookie sa\n    server b 127.0.0.1:{pb} cookie sb\n",
        pa = a.port,
        pb = b.port
    ));
    let (head, _) = curl(&["-i", &format!("http://127.0.0.1:{prefix}/set-cookie")]);
    let line = head
        .lines()
        .find(|l| l.starts_with("Set-Cookie:") || l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{head}"));
    // The server's value keeps its attributes behind the server's cookie and `~`.
    let home = if line.contains("JSESSIONID=sa~abc; Path=/") {
        "a"
    } else {
        assert!(line.contains("JSESSIONID=sb~abc; Path=/"), "{line}");
        "b"
    };
    let value = if home == "a" { "sa~abc" } else { "sb~abc" };
    for _ in 0..4 {
        let (body, _) = curl(&[
            "-H",
            &format!("Cookie: JSESSIONID={value}"),
            &format!("http://127.0.0.1:{prefix}/"),
        ]);
        // Back to the same server, which sees its own value.
        assert!(body.starts_with(&format!("{home} ")), "{body}");
        assert!(body.contains("cookie=[JSESSIONID=abc]"), "{body}");
    }
    let (head, _) = curl(&["-i", &format!("http://127.0.0.1:{rewrite}/set-cookie")]);
    assert!(
        head.contains("JSESSIONID=sa; Path=/") || head.contains("JSESSIONID=sb; Path=/"),
        "{head}"
    );
}

#[test]
fn l7_hashing_and_stick_tables_pick_stable_servers() {
    let backends: Vec<Backend> = ["a", "b", "c"].into_iter().map(Backend::start).collect();
    let servers = |names: &[&str]| {
        names
            .iter()
            .zip(&backends)
            .map(|(n, b)| format!("    server {n} 127.0.0.1:{}\n", b.port))
            .collect::<String>()
    };
    let (by_param, by_uri, by_header, sticky) =
        (free_port(), free_port(), free_port(), free_port());
    let _sy = start(&format!(
        "{DEFAULTS}listen p\n    bind 127.0.0.1:{by_param}\n    balance url_param user\n{s}\
         listen u\n    bind 127.0.0.1:{by_uri}\n    balance uri\n    hash-type consistent\n{s}\
         listen h\n    bind 127.0.0.1:{by_header}\n    balance hdr(X-Tenant)\n{s}\
         listen s\n    bind 127.0.0.1:{sticky}\n    balance roundrobin\n\
         \x20   stick-table type ip size 100 expire 1m\n    stick on src\n{s}",
        s = servers(&["a", "b", "c"])
    ));
    let server_of = |port: u16, path: &str, extra: &[&str]| {
        let url = format!("http://127.0.0.1:{port}{path}");
        let mut args: Vec<&str> = extra.to_vec();
        args.push(&url);
        curl(&args).0.chars().next().unwrap_or('?')
    };
    let mut seen = std::collections::HashSet::new();
    for user in 0..12 {
        let path = format!("/q?user=u{user}&page=1");
        let first = server_of(by_param, &path, &[]);
        assert_eq!(
            server_of(by_param, &format!("/other?page=2&user=u{user}"), &[]),
            first
        );
        seen.insert(first);
        let uri = format!("/doc/{user}");
        assert_eq!(server_of(by_uri, &uri, &[]), server_of(by_uri, &uri, &[]));
        let tenant = format!("X-Tenant: t{user}");
        assert_eq!(
            server_of(by_header, "/", &["-H", &tenant]),
            server_of(by_header, "/x", &["-H", &tenant])
        );
    }
    assert!(seen.len() >= 2, "url_param spreads users: {seen:?}");
    let first = server_of(sticky, "/", &[]);
    for _ in 0..5 {
        assert_eq!(server_of(sticky, "/", &[]), first);
    }
}

#[test]
fn server_close_mode_closes_server_connections_after_each_response() {
    let a = Backend::start("a");
    let port = free_port();
    let _sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    option http-server-close\n\
         \x20   server a 127.0.0.1:{}\n",
        a.port
    ));
    let url = format!("http://127.0.0.1:{port}/");
    let (out, err) = curl(&["-w", "\\n", &url, &url, &url]);
    assert_eq!(out.lines().count(), 3, "{out}{err}");
    for line in out.lines() {
        assert!(line.contains("connection=[close]"), "{line}");
    }
    assert_eq!(a.accepts(), 3);
}

#[test]
fn large_bodies_stream_both_ways_over_one_server_connection() {
    let a = Backend::start("a");
    let (port, _sy) = start_web(&a);
    let dir = std::env::temp_dir().join(format!("switchyard-http-big-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let upload = dir.join("upload");
    std::fs::write(&upload, pattern(3_000_000)).unwrap();
    let (first, second) = (dir.join("first"), dir.join("second"));
    let big = format!("http://127.0.0.1:{port}/big/5000000");
    let post = format!("http://127.0.0.1:{port}/upload");
    // One curl: three requests over one client connection, so over one pooled server
    // connection too; a 5 MB response each way around a 3 MB request body.
    let (out, err) = curl(&[
        "-o",
        first.to_str().unwrap(),
        &big,
        "--next",
        "--data-binary",
        &format!("@{}", upload.display()),
        "-w",
        "%{http_code}",
        &post,
        "--next",
        "-o",
        second.to_str().unwrap(),
        &big,
    ]);
    assert!(out.contains("body=3000000"), "{out}{err}");
    for file in [&first, &second] {
        let got = std::fs::read(file).unwrap();
        assert_eq!(got.len(), 5_000_000, "{err}");
        assert!(got == pattern(5_000_000), "the response body was altered");
    }
    assert_eq!(a.accepts(), 1, "the server connection was not reused");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn responses_carry_the_servers_headers_and_no_date_of_ours() {
    let a = Backend::start("a");
    let (port, _sy) = start_web(&a);
    let (out, err) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    let head = out.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{out}{err}");
    assert!(head.contains("content-type: text/plain"), "{out}");
    // The test server sends no `Date`; HAProxy adds none either.
    assert!(!head.contains("\ndate:"), "{out}");
}

/// `http-reuse` as HAProxy 2.6 (checked against 2.6.12): a server connection goes back to
/// its server's pool when its response is over, for other requests, so idle clients hold
/// none. With `safe` (the default) a client connection's first request always opens its
/// own; with `aggressive` it takes one the server has already kept alive for a second
/// request; with `always` any; with `never` each client keeps its own.
#[test]
fn server_connections_are_shared_as_http_reuse_says() {
    for reuse in ["safe", "aggressive", "always", "never"] {
        let a = Backend::start("a");
        let port = free_port();
        let _sy = start(&format!(
            "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    http-reuse {reuse}\n    \
             server a 127.0.0.1:{}\n",
            a.port
        ));
        shared_connections(reuse, port, &a);
    }
}

fn shared_connections(reuse: &str, port: u16, a: &Backend) {
    let connect = || {
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
    };
    let ask = |client: &mut TcpStream, path: &str| {
        let body = http_get_path(client, path);
        body.rsplit_once("conn=").unwrap().1.to_string()
    };
    let (mut first, mut second) = (connect(), connect());
    let first_1 = ask(&mut first, "/first/1");
    // Idle, but it has carried one request only: not for another client's first request
    // (unless `always`).
    let second_1 = ask(&mut second, "/second/1");
    assert_eq!(first_1 == second_1, reuse == "always", "{reuse}");
    // Later requests take whichever is idle (`never`: their own), and prove it: one or two
    // connections serve all.
    let mut seen = vec![first_1.clone(), second_1.clone()];
    for round in 2..5 {
        let (f, s) = (
            ask(&mut first, &format!("/first/{round}")),
            ask(&mut second, &format!("/second/{round}")),
        );
        if reuse == "never" {
            assert_eq!((&f, &s), (&first_1, &second_1), "{reuse}");
        }
        seen.extend([f, s]);
    }
    let opened = a.accepts();
    assert_eq!(
        opened,
        if reuse == "always" { 1 } else { 2 },
        "{reuse}: {seen:?}"
    );
    assert!(
        seen.iter().all(|c| *c == seen[0] || *c == seen[1]),
        "{reuse}: {seen:?}"
    );
    // A new client's first request: a connection of its own, except with `aggressive`
    // (a proven one) and `always`.
    let mut third = connect();
    let third_1 = ask(&mut third, "/third/1");
    let shared = matches!(reuse, "aggressive" | "always");
    assert_eq!(
        seen.contains(&third_1),
        shared,
        "{reuse}: {third_1} {seen:?}"
    );
    assert_eq!(a.accepts(), opened + usize::from(!shared), "{reuse}");
    // Its next request: with `safe`, an idle shared one; its own connection was closed, as
    // the server already had idle connections for all it needs.
    let third_2 = ask(&mut third, "/third/2");
    match reuse {
        "safe" => assert!(seen.contains(&third_2), "{reuse}: {third_2} {seen:?}"),
        "never" => assert_eq!(third_2, third_1, "{reuse}"),
        _ => {}
    }
}

/// Idle server connections beyond the server's estimated need are closed every
/// `pool-purge-delay`: half the surplus each time, the need decaying to what was used since.
/// Four clients one after the other leave four idle connections (`pool-low-conn 3` lets three
/// go idle beyond the need of one); the first purge closes three (half the surplus of
/// three, rounded up, plus one), the next halves the need to 0 and the third closes the last.
#[test]
fn idle_server_connections_are_purged_down_to_the_need() {
    let server = http_port_server();
    let (front, stats, _sy) = start_web_with_stats(
        "    nbthread 1\n",
        &format!("127.0.0.1:{server} pool-purge-delay 1s pool-low-conn 3"),
    );
    // used_cur used_max need_est unsafe_nb safe_nb idle_cur
    let counts = || {
        let fields = servers_conn(stats);
        let numbers: Vec<i64> = fields[6..13]
            .iter()
            .filter_map(|f| f.parse().ok())
            .collect();
        assert_eq!(numbers.len(), 7, "{fields:?}");
        [
            numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[6],
        ]
    };
    let mut ports = Vec::new();
    for _ in 0..4 {
        let mut client = TcpStream::connect(("127.0.0.1", front)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ports.push(http_get(&mut client));
    }
    ports.dedup();
    assert_eq!(ports.len(), 4, "first requests open their own: {ports:?}");
    assert_eq!(counts(), [0, 1, 1, 4, 0, 4]);
    // Polled well within each period, so that every stage is seen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = vec![counts()];
    while counts()[5] > 0 {
        assert!(Instant::now() < deadline, "still idle: {seen:?}");
        let now = counts();
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen.push(counts());
    assert_eq!(
        seen,
        [
            [0, 1, 1, 4, 0, 4],
            [0, 0, 1, 1, 0, 1],
            [0, 0, 0, 1, 0, 1],
            [0, 0, 0, 0, 0, 0]
        ]
    );
}

/// A server's idle connections lead to its old address once `set server addr` moves it, and
/// nothing may use them in maintenance: both close them (as HAProxy does), so the next
/// request reaches the new address, and `del server` follows maintenance.
#[test]
fn idle_connections_close_when_the_server_moves_or_enters_maintenance() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (front, stats, _sy) = start_web_with_stats("", &format!("127.0.0.1:{}", a.port));
    let idle_cur = || servers_conn(stats)[13].clone();
    let mut client = TcpStream::connect(("127.0.0.1", front)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut ask = |path: &str| http_get_path(&mut client, path);
    assert!(ask("/1").starts_with("a GET /1"));
    assert_eq!(idle_cur(), "1");
    let moved = cli(
        stats,
        &format!("set server web/s1 addr 127.0.0.1 port {}", b.port),
    );
    assert!(moved.contains("port changed from"), "{moved}");
    assert_eq!(
        idle_cur(),
        "0",
        "the connection to the old address is closed"
    );
    // The client's next request may take any idle connection: none leads to `a` any more.
    assert!(ask("/2").starts_with("b GET /2"), "went to the old address");
    assert_eq!(idle_cur(), "1");
    assert_eq!(cli(stats, "set server web/s1 state maint"), "\n");
    assert_eq!(idle_cur(), "0", "closed on entering maintenance");
    assert_eq!(cli(stats, "del server web/s1"), "Server deleted.\n");
    assert_eq!(a.accepts() + b.accepts(), 2);
}

#[test]
fn a_pooled_connection_the_server_closed_is_not_reused() {
    let a = Backend::start("a");
    let (port, _sy) = start_web(&a);
    // The server answers, then closes a connection it did not announce as closing: the
    // proxy pools it, and must notice the close before it sends anything on it.
    let (out, err) = curl(&[&format!("http://127.0.0.1:{port}/close-after")]);
    assert!(out.starts_with("a GET /close-after"), "{out}{err}");
    std::thread::sleep(Duration::from_millis(200));
    // A POST is not retried on another connection: it only succeeds if it never went out on
    // the closed one.
    let (out, err) = curl(&[
        "-d",
        "payload",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{port}/after"),
    ]);
    assert!(out.starts_with("a POST /after"), "{out}{err}");
    assert!(out.ends_with(" 200"), "{out}{err}");
    assert_eq!(a.accepts(), 2);
}

#[test]
fn a_written_request_goes_again_only_from_a_connection_that_was_idle() {
    let status = |urls: &[String]| {
        let mut args = vec!["-s", "-w", "%{http_code} "];
        args.extend(
            urls.iter()
                .flat_map(|url| ["-o", "/dev/null", url.as_str()]),
        );
        let (out, err) = curl(&args);
        (out.trim().to_string(), err)
    };
    // Over one client connection: `/` leaves the server connection to this client, `/drop`
    // goes out on it at once and the server closes without answering. A connection in
    // steady use is not where a server's keep-alive timeout strikes, and the request was
    // written: it does not go again (HAProxy's default `retry-on conn-failure`).
    let a = Backend::start("a");
    let (port, _sy) = start_web(&a);
    let (out, err) = status(&[
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{port}/drop"),
    ]);
    assert_eq!(out, "200 502", "{err}");
    assert_eq!(a.accepts(), 1);

    // A pooled connection idle for over a second, as one the server may close just as a
    // request goes out on it: a GET dropped there goes again, on a fresh connection (which
    // the server drops as well, hence the 502).
    let b = Backend::start("b");
    let (port, _sy) = start_web(&b);
    let (out, err) = status(&[format!("http://127.0.0.1:{port}/")]);
    assert_eq!(out, "200", "{err}");
    std::thread::sleep(Duration::from_millis(1300));
    let (out, err) = status(&[format!("http://127.0.0.1:{port}/drop")]);
    assert_eq!(out, "502", "{err}");
    assert_eq!(b.accepts(), 2);
}

#[test]
fn error_pages_and_retries() {
    let a = Backend::start("a");
    // A port nobody listens on.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (none, slow, retried) = (free_port(), free_port(), free_port());
    let mut sy = start(&format!(
        "{DEFAULTS}listen none\n    bind 127.0.0.1:{none}\n    server dead 127.0.0.1:{dead}\n\
         listen slow\n    bind 127.0.0.1:{slow}\n    timeout server 500ms\n    server a 127.0.0.1:{}\n\
         listen retried\n    bind 127.0.0.1:{retried}\n    balance roundrobin\n\
         \x20   server dead 127.0.0.1:{dead}\n    server a 127.0.0.1:{}\n",
        a.port, a.port
    ));
    let status = |url: String| curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]).0;
    // Connection refused on every try: 503 and `SC` in the log.
    assert_eq!(status(format!("http://127.0.0.1:{none}/")), "503");
    sy.wait_for_output(" 503 ", Duration::from_secs(5)).unwrap();
    assert!(
        sy.stdout_so_far().contains(" none/dead "),
        "{}",
        sy.stdout_so_far()
    );
    assert!(
        sy.stdout_so_far().contains(" SC-- "),
        "{}",
        sy.stdout_so_far()
    );
    // No response within `timeout server`: 504 (`sH`).
    let started = Instant::now();
    assert_eq!(status(format!("http://127.0.0.1:{slow}/slow")), "504");
    assert!(started.elapsed() < Duration::from_secs(5));
    sy.wait_for_output(" sH-- ", Duration::from_secs(5))
        .unwrap();
    // The server closes without answering: 502 (`SH`).
    assert_eq!(status(format!("http://127.0.0.1:{slow}/drop")), "502");
    sy.wait_for_output(" SH-- ", Duration::from_secs(5))
        .unwrap();
    // A dead server in the farm: retried, redispatched to the live one, never an error.
    for _ in 0..6 {
        assert_eq!(status(format!("http://127.0.0.1:{retried}/")), "200");
    }
}

#[test]
fn upgrades_become_tunnels() {
    let a = Backend::start("a");
    let port = free_port();
    let _sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    timeout tunnel 1h\n    server a 127.0.0.1:{}\n",
        a.port
    ));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header == "\r\n" {
            break;
        }
    }
    for message in ["hello\n", "binary \u{1}\u{2}\n"] {
        client.write_all(message.as_bytes()).unwrap();
        let mut echoed = String::new();
        reader.read_line(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
}

#[test]
fn slow_clients_are_cut_by_timeout_http_request() {
    let a = Backend::start("a");
    let port = free_port();
    let _sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    timeout http-request 500ms\n    server a 127.0.0.1:{}\n",
        a.port
    ));
    // Slowloris: headers a byte at a time, never finished.
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .cycle()
        .take(400)
    {
        if client.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !closed {
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the slow client was not cut: {took:?}"
    );
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert_eq!(a.accepts(), 0);
}

#[test]
fn idle_connections_close_after_keep_alive_or_client_timeout() {
    let a = Backend::start("a");
    // How long until the proxy closes `client`, reading (and returning) whatever it sent.
    let until_closed = |mut client: TcpStream| {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        let _ = client.read_to_end(&mut seen);
        (
            started.elapsed(),
            String::from_utf8_lossy(&seen).into_owned(),
        )
    };
    // After a response, `timeout http-keep-alive` bounds the wait for the next request.
    let port = free_port();
    let _sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    timeout http-request 3s\n\
         \x20   timeout http-keep-alive 300ms\n    server a 127.0.0.1:{}\n",
        a.port
    ));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (took, seen) = until_closed(client);
    assert!(seen.contains("a GET /one"), "{seen}");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");

    // With neither `http-request` nor `http-keep-alive`, `timeout client` bounds a
    // connection that never sends a request; it is answered `408`, as in HAProxy.
    let port = free_port();
    let _sy = start(&format!(
        "{DEFAULTS}listen quiet\n    bind 127.0.0.1:{port}\n    timeout client 600ms\n\
         \x20   server a 127.0.0.1:{}\n",
        a.port
    ));
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (took, seen) = until_closed(client);
    assert!(seen.starts_with("HTTP/1.1 408 "), "{seen}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn wrk_load_gets_no_errors() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = free_port();
    let _sy = start(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    balance leastconn\n    no log\n\
         \x20   server a 127.0.0.1:{}\n    server b 127.0.0.1:{}\n",
        a.port, b.port
    ));
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", "8", "-d", "3s", "--latency"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("wrk must be installed (scripts/ensure-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("wrk through switchyard (mode http, 2 servers):\n{text}");
    assert!(out.status.success(), "{text}");
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(requests > 500, "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
}

#[test]
fn string_stick_tables_follow_server_cookies_and_headers() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (by_cookie, by_header) = (free_port(), free_port());
    let servers = format!(
        "    server a 127.0.0.1:{}\n    server b 127.0.0.1:{}\n",
        a.port, b.port
    );
    let _sy = start(&format!(
        "{DEFAULTS}listen c\n    bind 127.0.0.1:{by_cookie}\n    balance roundrobin\n\
         \x20   stick-table type string len 32 size 1k expire 10m\n\
         \x20   stick match req.cook(JSESSIONID)\n    stick store-response res.cook(JSESSIONID)\n{servers}\
         listen h\n    bind 127.0.0.1:{by_header}\n    balance roundrobin\n\
         \x20   stick-table type string size 1k\n    stick on hdr(X-Tenant)\n{servers}"
    ));
    let first = |out: String| out.chars().next().unwrap_or('?');
    // The server that set the session cookie gets every request that carries it, although
    // round robin alone would alternate.
    let home = first(curl(&[&format!("http://127.0.0.1:{by_cookie}/set-cookie")]).0);
    for _ in 0..6 {
        let (out, _) = curl(&[
            "-H",
            "Cookie: JSESSIONID=abc",
            &format!("http://127.0.0.1:{by_cookie}/"),
        ]);
        assert_eq!(first(out), home);
    }
    // Without the cookie: plain round robin.
    let plain: std::collections::HashSet<char> = (0..4)
        .map(|_| first(curl(&[&format!("http://127.0.0.1:{by_cookie}/")]).0))
        .collect();
    assert_eq!(plain.len(), 2, "{plain:?}");
    for tenant in ["blue", "green", "red"] {
        let header = format!("X-Tenant: {tenant}");
        let url = format!("http://127.0.0.1:{by_header}/");
        let once = first(curl(&["-H", &header, &url]).0);
        for _ in 0..3 {
            assert_eq!(first(curl(&["-H", &header, &url]).0), once, "{tenant}");
        }
    }
}

#[test]
fn the_log_times_a_slow_request_head_and_not_the_idle_time_before_it() {
    let server = Backend::start("a");
    let (port, mut sy) = start_web(&server);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let read_response = |client: &mut TcpStream| {
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert!(reader.buffer().is_empty());
    };
    // A head sent in two parts 400 ms apart: TR covers the gap.
    client
        .write_all(b"GET /split HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    client.write_all(b"\r\n").unwrap();
    read_response(&mut client);
    // The next request comes after 400 ms of keep-alive idleness, in one piece: TR is
    // about 0, and the idle time is in neither TR nor Ta.
    std::thread::sleep(Duration::from_millis(400));
    client
        .write_all(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_response(&mut client);
    sy.wait_for_output("\"GET /whole HTTP/1.1\"", Duration::from_secs(5))
        .unwrap();
    let log = sy.stdout_so_far();
    let times = |path: &str| -> Vec<u64> {
        let line = log_line(&log, &format!("\"GET {path} HTTP/1.1\""));
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[4]
            .split('/')
            .map(|t| t.parse().unwrap_or_else(|_| panic!("{line}")))
            .collect()
    };
    let (split, whole) = (times("/split"), times("/whole"));
    // TR/Tw/Tc/Tr/Ta
    assert!(
        (380..2000).contains(&split[0]),
        "TR of the split head: {split:?}"
    );
    assert!(split[4] >= split[0], "Ta includes TR: {split:?}");
    assert!(whole[0] < 100, "TR of the whole head: {whole:?}");
    assert!(whole[4] < 300, "Ta without the idle time: {whole:?}");
}

#[test]
fn refused_request_heads_are_logged_and_counted_as_haproxy_does() {
    let server = Backend::start("a");
    let (port, stats) = (free_port(), free_port());
    let defaults = DEFAULTS.replacen(
        "global\n",
        &format!("global\n    stats socket ipv4@127.0.0.1:{stats} level user\n"),
        1,
    );
    let mut sy = start(&format!(
        "{defaults}listen web\n    bind 127.0.0.1:{port}\n    timeout http-request 300ms\n\
         \x20   server a 127.0.0.1:{}\n",
        server.port
    ));
    let exchange = |request: &[u8]| {
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(request).unwrap();
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        reply
    };
    assert!(exchange(b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // Part of a head, then nothing until `timeout http-request`.
    assert!(exchange(b"GET / HTTP/1.1\r\nHo").starts_with("HTTP/1.1 408 "));
    sy.wait_for_output(" 408 ", Duration::from_secs(5)).unwrap();
    let log = sy.stdout_so_far();
    let fields = |status: &str| -> Vec<String> {
        let line = log_line(&log, &format!(" {status} 0 "));
        assert!(line.ends_with(" \"<BADREQ>\""), "{line}");
        line.split_whitespace().map(str::to_string).collect()
    };
    // `127.0.0.1:PORT [date] web web/<NOSRV> -1/-1/-1/-1/Ta 400 0 - - PR-- 1/1/0/0/0 0/0 "<BADREQ>"`
    let bad = fields("400");
    assert_eq!(&bad[2..4], ["web", "web/<NOSRV>"], "{bad:?}");
    assert!(bad[4].starts_with("-1/-1/-1/-1/"), "{bad:?}");
    assert_eq!(&bad[7..10], ["-", "-", "PR--"], "{bad:?}");
    let slow = fields("408");
    assert_eq!(&slow[7..10], ["-", "-", "cR--"], "{slow:?}");
    let ta: u64 = slow[4].rsplit('/').next().unwrap().parse().unwrap();
    assert!(
        (250..3000).contains(&ta),
        "Ta of the timed-out head: {slow:?}"
    );
    // Neither reached the server; each counts as a request and an invalid one, as in
    // HAProxy 2.6 (`ereq`, `req_tot`, `hrsp_4xx`).
    assert_eq!(server.accepts(), 0);
    let stat = switchyard_testkit::cli(stats, "show stat web 1 -1");
    let (header, frontend) = (stat.lines().next().unwrap(), stat.lines().nth(1).unwrap());
    let column = |name: &str| {
        let at = header
            .trim_start_matches("# ")
            .split(',')
            .position(|h| h == name)
            .unwrap();
        frontend.split(',').nth(at).unwrap().to_string()
    };
    for name in ["ereq", "req_tot", "hrsp_4xx"] {
        assert_eq!(column(name), "2", "{name} in:\n{stat}");
    }
}

#[test]
fn connections_that_send_nothing_are_answered_counted_and_logged_as_haproxy_does() {
    let server = Backend::start("a");
    let stats = free_port();
    let defaults = DEFAULTS.replacen(
        "global\n",
        &format!("global\n    stats socket ipv4@127.0.0.1:{stats} level user\n"),
        1,
    );
    // One frontend per treatment: HAProxy's default, `dontlognull`, `http-ignore-probes`.
    let names = ["plain", "quiet", "probes"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let mut config = defaults;
    for ((name, port), option) in names.iter().zip(&ports).zip([
        "",
        "    option dontlognull\n",
        "    option http-ignore-probes\n",
    ]) {
        config += &format!(
            "listen {name}\n    bind 127.0.0.1:{port}\n    timeout http-request 300ms\n\
             {option}    server a 127.0.0.1:{}\n",
            server.port
        );
    }
    let mut sy = start(&config);
    let reply_to = |mut client: TcpStream| {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reply = Vec::new();
        let _ = client.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    };
    let connect = |port: u16| TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (name, &port) in names.iter().zip(&ports) {
        let answers = *name != "probes";
        let status = |reply: &str, code: &str| {
            if answers {
                assert!(
                    reply.starts_with(&format!("HTTP/1.1 {code} ")),
                    "{name}: {reply}"
                );
            } else {
                assert_eq!(reply, "", "{name}");
            }
        };
        // Closed before any byte.
        drop(connect(port));
        // Half-closed after 200 ms without a byte: HAProxy's `400` (`CR--`).
        let client = connect(port);
        std::thread::sleep(Duration::from_millis(200));
        client.shutdown(std::net::Shutdown::Write).unwrap();
        status(&reply_to(client), "400");
        // Nothing until `timeout http-request`: `408` (`cR--`).
        status(&reply_to(connect(port)), "408");
        // Between requests a client may leave, or stay quiet until its timeout, unnoticed.
        for leave in [true, false] {
            let mut client = connect(port);
            client
                .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut reply = BufReader::new(client.try_clone().unwrap());
            let mut line = String::new();
            reply.read_line(&mut line).unwrap();
            assert!(line.starts_with("HTTP/1.1 200 "), "{name}: {line}");
            if leave {
                client.shutdown(std::net::Shutdown::Both).unwrap();
            } else {
                let rest = reply_to(client);
                assert!(!rest.contains("HTTP/1.1 408"), "{name}: {rest}");
            }
        }
        // Part of a head, then a half-close: `400` (`CR--`) whatever the options.
        let mut client = connect(port);
        client.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(reply_to(client).starts_with("HTTP/1.1 400 "), "{name}");
    }
    sy.wait_for_output("probes probes/<NOSRV>", Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let log = sy.stdout_so_far();
    // `frontend status termination` of every refused request, in order.
    let refused: Vec<String> = log
        .lines()
        .filter(|l| l.ends_with(" \"<BADREQ>\""))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[3], format!("{}/<NOSRV>", f[2]), "{l}");
            assert!(f[4].starts_with("-1/-1/-1/-1/"), "{l}");
            format!("{} {} {}", f[2], f[5], f[9])
        })
        .collect();
    assert_eq!(
        refused,
        [
            "plain 400 CR--",
            "plain 400 CR--",
            "plain 408 cR--",
            "plain 400 CR--",
            "quiet 400 CR--",
            "probes 400 CR--",
        ],
        "{log}"
    );
    // `Ta` of a connection that sent nothing runs from its start.
    // The half-closed one (after 200 ms) is the longer of the two closed without a byte.
    let ta = log
        .lines()
        .filter(|l| l.contains(" plain plain/<NOSRV> ") && l.contains(" 400 0 "))
        .filter_map(|l| l.split_whitespace().nth(4)?.get(12..)?.parse::<u64>().ok())
        .max();
    assert!(
        ta.is_some_and(|ta| (150..3000).contains(&ta)),
        "{ta:?} in\n{log}"
    );
    // Counted as HAProxy 2.6 counts them (its numbers for this sequence), also with
    // `dontlognull`; probes ignored are not counted at all.
    let stat = switchyard_testkit::cli(stats, "show stat -1 1 -1");
    for (name, [ereq, req_tot, hrsp_4xx]) in
        names
            .iter()
            .zip([["4", "6", "4"], ["4", "6", "4"], ["1", "3", "1"]])
    {
        let row = switchyard_testkit::stat_row(&stat, name, "FRONTEND");
        assert_eq!(
            [&row["ereq"], &row["req_tot"], &row["hrsp_4xx"]],
            [ereq, req_tot, hrsp_4xx],
            "{name}: ereq, req_tot, hrsp_4xx in\n{stat}"
        );
    }
    // Only the six whole requests reached the server (at most a connection each).
    assert!((3..=6).contains(&server.accepts()), "{}", server.accepts());
}

/// The first line of `log` that contains `needle`.
fn log_line<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line with {needle:?} in:\n{log}"))
}
