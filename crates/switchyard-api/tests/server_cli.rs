//! Stats socket server tests with a fake executor, over TCP and unix sockets.

use std::sync::Arc;
use std::time::Duration;

use switchyard_api::command::Command;
use switchyard_api::server::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

struct Fake;

impl Executor for Fake {
    async fn execute(&self, command: Command, _level: Level) -> String {
        match command {
            Command::GetWeight(s) if s.server == "s1" => "5 (initial 10)\n".into(),
            Command::GetWeight(s) if s.server == "s2" => "1 (initial 1)\n".into(),
            Command::GetWeight(_) => "No such server.\n".into(),
            other => format!("{other:?}\n"),
        }
    }
}

async fn start(level: Level, timeout: Duration) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let l = Listener::bind(&Bind::Tcp {
        addr: "127.0.0.1:0".parse().unwrap(),
        reuse_port: false,
    })
    .await
    .unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    let mut o = ServeOptions::new(level);
    o.timeout = timeout;
    tokio::spawn(serve_listener(l, o, Arc::new(Fake), rx));
    (addr, tx)
}

async fn ask(addr: std::net::SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("server closes")
        .unwrap();
    out
}

fn s(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn one_shot_chaining_and_escapes() {
    let (addr, _stop) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    assert_eq!(
        s(ask(addr, b"get weight be1/s1\n").await),
        "5 (initial 10)\n\n"
    );
    assert_eq!(
        s(ask(addr, b"get weight be1/s1; get weight be1/s3\n").await),
        "5 (initial 10)\n\nNo such server.\n\n"
    );
    // Several lines sent at once are all answered (HAProxy does the same).
    assert_eq!(
        s(ask(addr, b"get weight be1/s1\nget weight be1/s1\n").await),
        "5 (initial 10)\n\n5 (initial 10)\n\n"
    );
    assert_eq!(
        s(ask(addr, b"get weight be1/s1\\;x\n").await),
        "No such server.\n\n"
    );
    assert_eq!(
        s(ask(addr, b"get weight be1\\/s1\r\n").await),
        "5 (initial 10)\n\n"
    );
    // Parse errors keep HAProxy's exact framing: this message has no LF of its own.
    assert_eq!(
        s(ask(addr, b"add server\n").await),
        "Require 'backend/server'.\n"
    );
    let out = s(ask(addr, b"get weight be1/s1;\n").await);
    assert!(out.starts_with(
        "5 (initial 10)\n\nUnknown command. Please enter one of the following commands only:\n"
    ));
    assert!(out.ends_with("  quit                                    : disconnect\n\n"));
}

#[tokio::test]
async fn matches_haproxy_prompt_transcript() {
    let (addr, _stop) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/cli_prompt_session.txt"
    ))
    .unwrap();
    let (header, body) = golden.split_once('\n').unwrap();
    let input = header.split_once('\t').unwrap().1.replace("\\n", "\n") + "\n";
    assert_eq!(s(ask(addr, input.as_bytes()).await), body);
    assert_eq!(
        s(ask(addr, b"prompt\nquit\nget weight be1/s1\n").await),
        "\n> "
    );
}

#[tokio::test]
async fn interactive_waits_for_lines() {
    let (addr, _stop) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    c.write_all(b"prompt\n").await.unwrap();
    let n = c.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"\n> ");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.write_all(b"get weight be1/s1\n").await.unwrap();
    let n = c.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"5 (initial 10)\n\n> ");
    c.write_all(b"quit\n").await.unwrap();
    assert_eq!(c.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test]
async fn permissions_per_level() {
    let (user, _a) = start(Level::User, DEFAULT_TIMEOUT).await;
    let (oper, _b) = start(Level::Operator, DEFAULT_TIMEOUT).await;
    let (admin, _c) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    let denied = "Permission denied\n\n";
    assert_eq!(
        s(ask(user, b"set server be1/s1 state drain\n").await),
        denied
    );
    assert_eq!(
        s(ask(user, b"set server\n").await),
        denied,
        "level is checked before arguments"
    );
    assert_eq!(s(ask(user, b"clear counters\n").await), denied);
    assert_eq!(s(ask(user, b"show sess\n").await), denied);
    assert_eq!(
        s(ask(user, b"get weight be1/s1\n").await),
        "5 (initial 10)\n\n"
    );
    assert_eq!(
        s(ask(oper, b"clear counters\n").await),
        "ClearCounters { all: false }\n\n"
    );
    assert_eq!(s(ask(oper, b"clear counters all\n").await), denied);
    assert_eq!(
        s(ask(oper, b"set server be1/s1 state drain\n").await),
        denied
    );
    assert_eq!(
        s(ask(admin, b"clear counters all\n").await),
        "ClearCounters { all: true }\n\n"
    );
    assert_eq!(
        s(ask(admin, b"operator; clear counters all\n").await),
        "\nPermission denied\n\n"
    );
    assert_eq!(s(ask(user, b"operator\n").await), denied);
}

#[tokio::test]
async fn oversized_line_closes_without_answer() {
    let (addr, _stop) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let big = vec![b'a'; 1 << 20];
    let _ = c.write_all(&big).await; // the server may close before reading it all
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("closed");
    assert!(out.is_empty());
    // A long but fitting line is answered.
    let mut line = b"get weight be1/s1 ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 15000));
    line.push(b'\n');
    assert_eq!(s(ask(addr, &line).await), "5 (initial 10)\n\n");
}

#[tokio::test]
async fn idle_timeout_and_set_timeout_cli() {
    let (addr, _stop) = start(Level::Admin, Duration::from_millis(300)).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let t = std::time::Instant::now();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty() && t.elapsed() < Duration::from_secs(3));
    // `set timeout cli 2` lengthens this connection's timeout beyond the default 300 ms.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"prompt; set timeout cli 2\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.write_all(b"get weight be1/s1\n").await.unwrap();
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"5 (initial 10)\n\n> ") {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients() {
    let (addr, _stop) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(ask(addr, b"get weight be1/s1; show backend\n")))
        .collect();
    for t in tasks {
        assert_eq!(s(t.await.unwrap()), "5 (initial 10)\n\nShowBackend\n\n");
    }
}

#[tokio::test]
async fn python_raw_socket_client() {
    let (addr, _stop) = start(Level::Admin, DEFAULT_TIMEOUT).await;
    let script = "import socket,sys\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\ns.sendall(b'get weight be1/s1\\n')\nout=b''\nwhile True:\n    b=s.recv(4096)\n    if not b: break\n    out+=b\nsys.stdout.write(repr(out))\n";
    let port = addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &port])
            .output()
    })
    .await
    .unwrap();
    let Ok(out) = out else {
        eprintln!("python3 not available, skipping");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "b'5 (initial 10)\\n\\n'"
    );
}

#[tokio::test]
async fn unix_socket_mode_stale_file_and_cleanup() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("switchyard-api-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("admin.sock");
    // A stale socket file left by a dead process is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let (tx, rx) = watch::channel(false);
    let bind = Bind::Unix {
        path: path.clone(),
        mode: Some(0o600),
    };
    let server = tokio::spawn(serve(bind.clone(), Level::Admin, Arc::new(Fake), rx));
    let mut tries = 0;
    let mut c = loop {
        match tokio::net::UnixStream::connect(&path).await {
            Ok(c) => break c,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A live socket is not stolen.
    let (_tx2, rx2) = watch::channel(false);
    let err = serve(bind, Level::Admin, Arc::new(Fake), rx2)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    c.write_all(b"get weight be1/s1\n").await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    assert_eq!(s(out), "5 (initial 10)\n\n");
    tx.send(true).unwrap();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "socket file removed on stop");
    let _ = std::fs::remove_dir_all(&dir);
}
