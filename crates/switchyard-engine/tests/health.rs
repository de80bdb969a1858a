//! Health checks driving the data plane, in-process against real sockets: a server that
//! stops answering is taken out and traffic reroutes; it comes back after `rise` checks;
//! backups take over and hand back; `on-marked-down`/`on-marked-up` actions; passive
//! `observe layer4`; an HTTP health endpoint. Times from each change to rerouting are printed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::{parse_sources, Source};
use switchyard_engine::state::Backend;
use switchyard_engine::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A line-echo server that prefixes replies with its name and can be stopped and restarted
/// on the same port (its listener is closed while stopped, so connects are refused).
struct EchoServer {
    addr: SocketAddr,
    running: watch::Sender<bool>,
}

impl EchoServer {
    async fn start(name: &'static str) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (running, _) = watch::channel(true);
        let server = EchoServer { addr, running };
        server.serve(name, listener);
        server
    }

    fn serve(&self, name: &'static str, listener: TcpListener) {
        let mut stop = self.running.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.wait_for(|running| !running) => return,
                };
                let Ok((stream, _)) = accepted else { return };
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    loop {
                        let line = tokio::select! {
                            line = lines.next_line() => line,
                            // A stopped server drops its connections too, like a killed one.
                            _ = stop.wait_for(|running| !running) => return,
                        };
                        let Ok(Some(line)) = line else { return };
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
    }

    fn stop(&self) {
        self.running.send_replace(false);
    }

    async fn restart(&self, name: &'static str) {
        self.running.send_replace(true);
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(name, listener);
    }
}

struct Running {
    addr: SocketAddr,
    backend: Arc<Backend>,
}

async fn start(config: &str) -> Running {
    let port = switchyard_testkit::free_port();
    let config = config.replace("{port}", &port.to_string());
    let parsed = parse_sources(&[Source {
        name: "health.cfg".into(),
        text: config,
    }])
    .unwrap_or_else(|e| panic!("config rejected:\n{e}"));
    let engine = Engine::build(&parsed.config).await.unwrap();
    let addr = engine.local_addrs()[0].1;
    let backend = Arc::clone(&engine.runtime().backends[0]);
    tokio::spawn(engine.run());
    Running { addr, backend }
}

/// Opens a session, sends one line, returns the server name that answered.
async fn who_answers(addr: SocketAddr) -> Option<String> {
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"ping\n").await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_line(&mut reply))
        .await
        .ok()?
        .ok()?;
    reply
        .split(':')
        .next()
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

fn server_is_up(backend: &Backend, name: &str) -> bool {
    backend
        .servers
        .load()
        .iter()
        .find(|s| s.name == name)
        .unwrap()
        .up
        .load(Ordering::Relaxed)
}

/// Polls until `condition` holds; returns how long it took.
async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reroute_when_a_checked_server_dies_and_return_when_it_recovers() {
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n timeout check 500ms\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         server a {} check inter 100ms rise 2 fall 2\n server b {} check inter 100ms rise 2 fall 2\n",
        a.addr, b.addr
    ))
    .await;
    // Let the first checks confirm both servers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(who_answers(running.addr).await.unwrap());
    }
    assert_eq!(seen.len(), 2);

    a.stop();
    let stopped = Instant::now();
    let detected = wait_until("a marked DOWN", Duration::from_secs(5), || {
        !server_is_up(&running.backend, "a")
    })
    .await;
    for _ in 0..6 {
        assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
    }
    eprintln!(
        "reroute: server killed -> marked DOWN in {} ms (inter 100ms, fall 2)",
        detected.as_millis()
    );
    assert!(stopped.elapsed() >= Duration::from_millis(100));

    a.restart("a").await;
    let back = wait_until("a marked UP", Duration::from_secs(5), || {
        server_is_up(&running.backend, "a")
    })
    .await;
    eprintln!(
        "reroute: server restarted -> marked UP in {} ms (rise 2)",
        back.as_millis()
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(who_answers(running.addr).await.unwrap());
    }
    assert!(seen.contains("a"), "{seen:?}");
    let health = running.backend.servers.load()[0].health().clone();
    assert_eq!(health.down_transitions, 1);
    assert!(health.failed_checks >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_takes_over_and_hands_back_closing_its_sessions() {
    let active = EchoServer::start("active").await;
    let backup = EchoServer::start("backup").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n\
         listen l\n bind 127.0.0.1:{{port}}\n\
         server active {} check inter 100ms rise 1 fall 1 on-marked-up shutdown-backup-sessions\n\
         server backup {} check inter 100ms backup\n",
        active.addr, backup.addr
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(who_answers(running.addr).await.as_deref(), Some("active"));

    active.stop();
    let took = wait_until("active DOWN", Duration::from_secs(5), || {
        !server_is_up(&running.backend, "active")
    })
    .await;
    eprintln!(
        "reroute: active killed -> backup serving after {} ms",
        took.as_millis()
    );
    // A long-lived session on the backup.
    let mut on_backup = BufReader::new(TcpStream::connect(running.addr).await.unwrap());
    on_backup.get_mut().write_all(b"x\n").await.unwrap();
    let mut reply = String::new();
    on_backup.read_line(&mut reply).await.unwrap();
    assert_eq!(reply.trim_end(), "backup:x");

    active.restart("active").await;
    let took = wait_until("active UP", Duration::from_secs(5), || {
        server_is_up(&running.backend, "active")
    })
    .await;
    eprintln!(
        "reroute: active restarted -> traffic handed back after {} ms",
        took.as_millis()
    );
    assert_eq!(who_answers(running.addr).await.as_deref(), Some("active"));
    // `on-marked-up shutdown-backup-sessions` closed the backup session.
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(2), on_backup.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "backup session still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_shut_down_when_their_server_is_marked_down() {
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    // Checks of `a` go to a separate port, so its live sessions stay up while checks fail.
    let health = EchoServer::start("health").await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance first\n\
         server a {} check port {} inter 100ms rise 1 fall 1 on-marked-down shutdown-sessions\n\
         server b {} check inter 100ms\n",
        a.addr,
        health.addr.port(),
        b.addr
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut session = BufReader::new(TcpStream::connect(running.addr).await.unwrap());
    session.get_mut().write_all(b"1\n").await.unwrap();
    let mut reply = String::new();
    session.read_line(&mut reply).await.unwrap();
    assert_eq!(reply.trim_end(), "a:1");

    health.stop();
    let took = wait_until("a DOWN", Duration::from_secs(5), || {
        !server_is_up(&running.backend, "a")
    })
    .await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), session.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "session on the DOWN server still open"
    );
    eprintln!(
        "reroute: check failing -> sessions shut down, new ones on b after {} ms",
        took.as_millis()
    );
    assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_traffic_errors_mark_a_server_down_with_observe_layer4() {
    let b = EchoServer::start("b").await;
    let health = EchoServer::start("health").await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // The checks of `a` pass (they go to a live port), but its traffic port refuses.
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n retries 1\n option redispatch\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         server a 127.0.0.1:{dead} check port {} inter 10s observe layer4 error-limit 2 on-error mark-down\n\
         server b {} check inter 10s\n",
        health.addr.port(),
        b.addr
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server_is_up(&running.backend, "a"));
    for _ in 0..4 {
        // Sessions picked for `a` are redispatched to `b`: clients see no failure.
        assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
    }
    assert!(
        !server_is_up(&running.backend, "a"),
        "passive errors did not mark a DOWN"
    );
    // Marked DOWN once by the passive analysis; the active check it triggered at once may
    // pass, but one success is short of `rise 2`.
    let servers = running.backend.servers.load();
    assert_eq!(servers[0].health().down_transitions, 1);
    assert!(!servers[0].health().counter.is_up());
}

/// A server whose traffic port refuses, checked on a separate port, behind `balance first`
/// with `retries 1` + `option redispatch`: each client session makes exactly one connection
/// error on `a` (then is redispatched to `b`), so tests can count errors one by one.
/// `check` is the rest of `a`'s `server` line after `check port P`; `defaults` is extra.
async fn refusing_server(
    health: SocketAddr,
    b: SocketAddr,
    defaults: &str,
    check: &str,
) -> Running {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n retries 1\n option redispatch\n{defaults}\
         listen l\n bind 127.0.0.1:{{port}}\n balance first\n\
         server a 127.0.0.1:{dead} check port {} {check}\n\
         server b {b} check inter 10s\n",
        health.port(),
    ))
    .await
}

/// One live-traffic error on `a` after its check endpoint went away (its periodic check,
/// every 10 s, has not noticed yet). The error triggers an immediate check, which fails.
/// Returns whether `a` is still UP once that check ran, and how long after the error.
async fn one_error_then_a_failing_check(on_error: &str) -> (bool, Duration) {
    let b = EchoServer::start("b").await;
    let health = EchoServer::start("health").await;
    let running = refusing_server(
        health.addr,
        b.addr,
        "",
        &format!("inter 10s rise 2 fall 3 observe layer4 error-limit 1 on-error {on_error}"),
    )
    .await;
    let a = Arc::clone(&running.backend.servers.load()[0]);
    // The first check passes: fully UP (a start-up server sits at `rise`, one failure from
    // DOWN, which would hide the difference between the modes).
    wait_until("first check of a", Duration::from_secs(5), || {
        a.health().last.is_some()
    })
    .await;
    assert_eq!(a.health().counter.status_text(), "UP");
    health.stop();
    // The check endpoint is really gone (its listener closes asynchronously).
    while TcpStream::connect(health.addr).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let error = Instant::now();
    assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
    assert_eq!(a.counters.connect_errors.load(Ordering::Relaxed), 1);
    // The check the error asked for: the only active failure in this window.
    wait_until("the triggered check", Duration::from_secs(5), || {
        a.health().failed_checks >= 1
    })
    .await;
    let took = error.elapsed();
    (server_is_up(&running.backend, "a"), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_layer4_sudden_death_takes_a_server_down_on_its_next_failed_check() {
    // `sudden-death`: one error leaves the server one failure from DOWN, so the check it
    // triggers takes it out at once although `fall` is 3.
    let (up, took) = one_error_then_a_failing_check("sudden-death").await;
    assert!(
        !up,
        "sudden-death: still UP after one error and one failed check"
    );
    eprintln!(
        "observe layer4, on-error sudden-death: one connection error + one failed check -> DOWN {took:?} after the error (fall 3)"
    );
    // The default (`fastinter`) only checks again: one failed check of three, still UP.
    let (up, _) = one_error_then_a_failing_check("fastinter").await;
    assert!(
        up,
        "fastinter: DOWN after a single failed check with fall 3"
    );
}

/// An HTTP health endpoint that answers 200 only after `delay`.
async fn slow_health_endpoint(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 1024];
                let _ = stream.read(&mut request).await;
                tokio::time::sleep(delay).await;
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            });
        }
    });
    addr
}

/// `fall 3` errors on `a`, one session each, whose checks pass but take 2 s: the checks the
/// errors trigger cannot complete in between, so only the errors move the counter. Returns
/// `a`'s state after each error (as the stats show it) and its failed-check count.
async fn three_errors_with_slow_passing_checks(on_error: &str) -> (Vec<String>, u64, Duration) {
    let b = EchoServer::start("b").await;
    let health = slow_health_endpoint(Duration::from_secs(2)).await;
    let running = refusing_server(
        health,
        b.addr,
        " timeout check 5s\n option httpchk GET /\n",
        &format!("inter 10s rise 2 fall 3 observe layer4 error-limit 1 on-error {on_error}"),
    )
    .await;
    let a = Arc::clone(&running.backend.servers.load()[0]);
    wait_until("first check of a", Duration::from_secs(5), || {
        a.health().last.is_some()
    })
    .await;
    assert_eq!(a.health().counter.status_text(), "UP");
    let mut states = Vec::new();
    let first_error = Instant::now();
    for _ in 0..3 {
        // While `a` is UP the session tries it first, fails, and is redispatched to `b`.
        assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
        let state = a.health().counter.status_text();
        assert_eq!(server_is_up(&running.backend, "a"), state != "DOWN");
        states.push(state);
    }
    let failed = a.health().failed_checks;
    (states, failed, first_error.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_layer4_fail_check_counts_errors_as_failed_checks_down_after_fall() {
    let (states, failed, took) = three_errors_with_slow_passing_checks("fail-check").await;
    // Exactly `fall` errors, each one failed check.
    assert_eq!(states, ["UP 1/3", "UP 2/3", "DOWN"]);
    assert_eq!(failed, 3);
    eprintln!(
        "observe layer4, on-error fail-check: states after each connection error {states:?} (fall 3): DOWN {took:?} after the first error"
    );
    // The default (`fastinter`) does not count errors as checks: still fully UP.
    let (states, failed, _) = three_errors_with_slow_passing_checks("fastinter").await;
    assert_eq!(states, ["UP", "UP", "UP"]);
    assert_eq!(failed, 0);
}

/// A tiny HTTP health endpoint answering `GET /health` with 200 or 503.
async fn health_endpoint(healthy: Arc<AtomicU16>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let healthy = Arc::clone(&healthy);
            tokio::spawn(async move {
                let mut request = vec![0u8; 1024];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).to_string();
                let ok = request.starts_with("GET /health") && healthy.load(Ordering::Relaxed) == 1;
                let (status, body) = if ok {
                    ("200 OK", "ready")
                } else {
                    ("503 Service Unavailable", "not ready")
                };
                let response = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reroute_on_an_http_health_endpoint() {
    // CockroachDB style: SQL traffic on one port, `GET /health?ready=1` on the HTTP port.
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    let a_healthy = Arc::new(AtomicU16::new(1));
    let a_http = health_endpoint(Arc::clone(&a_healthy)).await;
    let b_http = health_endpoint(Arc::new(AtomicU16::new(1))).await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n timeout check 500ms\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         option httpchk GET /health?ready=1\n http-check expect status 200\n\
         server a {} check port {} inter 100ms rise 2 fall 2\n\
         server b {} check port {} inter 100ms rise 2 fall 2\n",
        a.addr,
        a_http.port(),
        b.addr,
        b_http.port()
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server_is_up(&running.backend, "a"));
    a_healthy.store(0, Ordering::Relaxed);
    let took = wait_until("a DOWN on 503", Duration::from_secs(5), || {
        !server_is_up(&running.backend, "a")
    })
    .await;
    eprintln!(
        "reroute: health endpoint 503 -> marked DOWN in {} ms (inter 100ms, fall 2)",
        took.as_millis()
    );
    for _ in 0..4 {
        assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
    }
    let last = running.backend.servers.load()[0]
        .health()
        .last
        .clone()
        .unwrap();
    assert_eq!((last.status.name(), last.code), ("L7STS", Some(503)));
    a_healthy.store(1, Ordering::Relaxed);
    let took = wait_until("a UP on 200", Duration::from_secs(5), || {
        server_is_up(&running.backend, "a")
    })
    .await;
    eprintln!(
        "reroute: health endpoint 200 -> marked UP in {} ms (rise 2)",
        took.as_millis()
    );
}

/// An agent that answers every connection with the current contents of `reply`.
async fn agent(reply: Arc<std::sync::Mutex<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let line = reply.lock().unwrap().clone();
            let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_replies_drain_and_weight_the_server() {
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    let reply = Arc::new(std::sync::Mutex::new("ready up 100%".to_string()));
    let agent_port = agent(Arc::clone(&reply)).await;
    let running = start(&format!(
        "defaults\n mode tcp\n timeout connect 500ms\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         server a {} weight 100 agent-check agent-port {agent_port} agent-inter 100ms\n\
         server b {} weight 100\n",
        a.addr, b.addr
    ))
    .await;
    let server_a = Arc::clone(&running.backend.servers.load()[0]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(server_a.weight.load(Ordering::Relaxed), 100);

    // `50%` halves the effective weight, keeping the configured one.
    *reply.lock().unwrap() = "50%".to_string();
    wait_until("weight 50", Duration::from_secs(5), || {
        server_a.weight.load(Ordering::Relaxed) == 50
    })
    .await;
    assert_eq!(server_a.uweight.load(Ordering::Relaxed), 100);

    // `drain`: no new sessions go to `a`.
    *reply.lock().unwrap() = "drain".to_string();
    wait_until("a drained", Duration::from_secs(5), || {
        server_a.admin_state() == switchyard_engine::state::AdminState::Drain
    })
    .await;
    for _ in 0..4 {
        assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
    }
    // `ready` and `down # maintenance`: back in service, then operationally DOWN.
    *reply.lock().unwrap() = "ready".to_string();
    wait_until("a ready", Duration::from_secs(5), || {
        server_a.admin_state() == switchyard_engine::state::AdminState::Ready
    })
    .await;
    *reply.lock().unwrap() = "down # planned maintenance".to_string();
    let took = wait_until("a DOWN by agent", Duration::from_secs(5), || {
        !server_is_up(&running.backend, "a")
    })
    .await;
    eprintln!(
        "reroute: agent said down -> out of rotation after {} ms",
        took.as_millis()
    );
    for _ in 0..4 {
        assert_eq!(who_answers(running.addr).await.as_deref(), Some("b"));
    }
}
