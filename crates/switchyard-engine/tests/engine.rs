//! The engine in-process against real sockets: queueing under `maxconn`, queue timeouts and
//! bounds, retries with redispatch, backup servers, and the global connection limit.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::{parse_sources, Source};
use switchyard_engine::{Engine, Stopper};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// An echo server that prefixes every line with its name.
async fn echo_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{name}:{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A port with nothing listening on it.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Running {
    addr: SocketAddr,
    engine_backends: Vec<Arc<switchyard_engine::state::Backend>>,
    stopper: Stopper,
}

/// Starts an engine on `config`, where `{port}` stands for a free listening port.
async fn start(config: &str) -> Running {
    let config = config.replace("{port}", &switchyard_testkit::free_port().to_string());
    let parsed = parse_sources(&[Source {
        name: "test.cfg".into(),
        text: config,
    }])
    .unwrap_or_else(|e| panic!("config rejected:\n{e}"));
    let engine = Engine::build(&parsed.config).await.unwrap();
    let addr = engine.local_addrs()[0].1;
    let engine_backends = engine.runtime().backends.clone();
    let stopper = engine.stopper();
    tokio::spawn(engine.run());
    Running {
        addr,
        engine_backends,
        stopper,
    }
}

async fn ask(stream: &mut BufReader<TcpStream>, line: &str) -> String {
    stream
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut reply))
        .await
        .expect("no reply within 5s")
        .unwrap();
    reply.trim_end().to_string()
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_queue_when_servers_are_full_and_proceed_in_order() {
    let server = echo_server("s1").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n timeout queue 5s\n\
         listen l\n bind 127.0.0.1:{{port}}\n server s1 {server} maxconn 2\n"
    ))
    .await;
    let backend = &running.engine_backends[0];
    let mut first = connect(running.addr).await;
    let mut second = connect(running.addr).await;
    assert_eq!(ask(&mut first, "a").await, "s1:a");
    assert_eq!(ask(&mut second, "b").await, "s1:b");

    // The third session must wait in the queue: its line gets no answer yet.
    let mut third = connect(running.addr).await;
    third.get_mut().write_all(b"c\n").await.unwrap();
    let mut reply = String::new();
    let early = tokio::time::timeout(Duration::from_millis(300), third.read_line(&mut reply)).await;
    assert!(
        early.is_err(),
        "third session was served while the server was full: {reply:?}"
    );
    assert_eq!(backend.counters.queue_current.load(Ordering::Relaxed), 1);

    // Freeing a slot lets it through.
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_line(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.trim_end(), "s1:c");
    assert_eq!(backend.counters.queue_current.load(Ordering::Relaxed), 0);
    assert_eq!(backend.counters.queue_max.load(Ordering::Relaxed), 1);
    running.stopper.stop_accepting();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_closes_the_waiting_session() {
    let server = echo_server("s1").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n timeout queue 300ms\n\
         listen l\n bind 127.0.0.1:{{port}}\n server s1 {server} maxconn 1\n"
    ))
    .await;
    let mut holder = connect(running.addr).await;
    assert_eq!(ask(&mut holder, "a").await, "s1:a");
    let started = Instant::now();
    let mut waiting = TcpStream::connect(running.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), waiting.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "expected the queued session to be closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "closed too late: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_is_bounded_by_maxqueue() {
    let server = echo_server("s1").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n timeout queue 10s\n\
         listen l\n bind 127.0.0.1:{{port}}\n server s1 {server} maxconn 1 maxqueue 1\n"
    ))
    .await;
    let mut holder = connect(running.addr).await;
    assert_eq!(ask(&mut holder, "a").await, "s1:a");
    let _queued = TcpStream::connect(running.addr).await.unwrap();
    // Wait until the first waiter is counted in the queue.
    let backend = &running.engine_backends[0];
    for _ in 0..100 {
        if backend.counters.queue_current.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The queue is full: the next session is refused at once, not after the queue timeout.
    let started = Instant::now();
    let mut refused = TcpStream::connect(running.addr).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_retried_then_redispatched() {
    let alive = echo_server("alive").await;
    let dead = dead_port();
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n retries 1\n option redispatch\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         server dead 127.0.0.1:{dead}\n server alive {alive}\n"
    ))
    .await;
    for i in 0..6 {
        let mut client = connect(running.addr).await;
        assert_eq!(
            ask(&mut client, &format!("m{i}")).await,
            format!("alive:m{i}")
        );
    }
    let backend = &running.engine_backends[0];
    let servers = backend.servers.load();
    let dead_server = servers.iter().find(|s| s.name == "dead").unwrap();
    assert!(dead_server.counters.connect_errors.load(Ordering::Relaxed) >= 3);
    assert!(backend.counters.redispatches.load(Ordering::Relaxed) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redispatch_a_dead_server_fails_the_session() {
    let dead = dead_port();
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n retries 1\n\
         listen l\n bind 127.0.0.1:{{port}}\n server dead 127.0.0.1:{dead}\n"
    ))
    .await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)));
    let backend = &running.engine_backends[0];
    assert_eq!(backend.counters.retries.load(Ordering::Relaxed), 1);
    assert_eq!(backend.counters.connect_errors.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_serves_only_when_no_active_server_is_usable() {
    let active = echo_server("active").await;
    let backup = echo_server("backup").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n\
         listen l\n bind 127.0.0.1:{{port}}\n server a {active}\n server b {backup} backup\n"
    ))
    .await;
    let mut client = connect(running.addr).await;
    assert_eq!(ask(&mut client, "x").await, "active:x");
    // Put the active server in maintenance, as an operator (or a failed check) would.
    let backend = &running.engine_backends[0];
    let servers = backend.servers.load();
    servers[0].admin.store(2, Ordering::Relaxed);
    backend.bump_generation();
    let mut client = connect(running.addr).await;
    assert_eq!(ask(&mut client, "y").await, "backup:y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_maxconn_holds_extra_connections_in_the_backlog() {
    let server = echo_server("s").await;
    let running = start(&format!(
        "global\n maxconn 1\ndefaults\n mode tcp\n timeout connect 1s\n\
         listen l\n bind 127.0.0.1:{{port}}\n server s {server}\n"
    ))
    .await;
    let mut first = connect(running.addr).await;
    assert_eq!(ask(&mut first, "1").await, "s:1");
    // The kernel completes the handshake, but the session is not accepted yet.
    let mut second = connect(running.addr).await;
    second.get_mut().write_all(b"2\n").await.unwrap();
    let mut reply = String::new();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.read_line(&mut reply))
            .await
            .is_err()
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), second.read_line(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.trim_end(), "s:2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_accepting_lets_sessions_in_flight_finish() {
    let server = echo_server("s").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\nlisten l\n bind 127.0.0.1:{{port}}\n server s {server}\n"
    ))
    .await;
    let mut client = connect(running.addr).await;
    assert_eq!(ask(&mut client, "before").await, "s:before");
    running.stopper.stop_accepting();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(running.addr).await.is_err(),
        "listener still open"
    );
    assert_eq!(ask(&mut client, "after").await, "s:after");
    assert_eq!(running.stopper.active_sessions(), 1);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), running.stopper.drained())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stick_on_src_keeps_a_client_on_its_server_until_it_leaves() {
    let one = echo_server("one").await;
    let two = echo_server("two").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         stick-table type ip size 1k expire 10m\n stick on src\n\
         server one {one}\n server two {two}\n"
    ))
    .await;
    // Round robin alone would alternate; the table keeps 127.0.0.1 where it went first.
    let mut first = connect(running.addr).await;
    let home = ask(&mut first, "a").await;
    let home = home.split(':').next().unwrap().to_string();
    for i in 0..6 {
        let mut client = connect(running.addr).await;
        assert_eq!(
            ask(&mut client, "b").await,
            format!("{home}:b"),
            "connection {i}"
        );
    }
    // Its server leaves: the client goes elsewhere, and stays there from then on, even once
    // the first server is back.
    let backend = &running.engine_backends[0];
    let servers = backend.servers.load();
    let index = servers.iter().position(|s| s.name == home).unwrap();
    servers[index].admin.store(2, Ordering::Relaxed);
    backend.bump_generation();
    let mut moved = connect(running.addr).await;
    let other = ask(&mut moved, "c").await;
    assert!(!other.starts_with(&home), "{other}");
    let other = other.split(':').next().unwrap().to_string();
    servers[index].admin.store(0, Ordering::Relaxed);
    backend.bump_generation();
    for _ in 0..4 {
        let mut client = connect(running.addr).await;
        assert_eq!(ask(&mut client, "d").await, format!("{other}:d"));
    }
    assert_eq!(backend.stick.as_ref().map(|t| t.len()), Some(1));
}
