//! Runtime changes through the control plane while traffic flows: the classic flow from an
//! empty backend (add server, set ready, traffic, maint, del), weights, addresses, limits and
//! killing sessions, with HAProxy's error messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{parse_sources, Host, Server as ServerLine, Source, Span};
use switchyard_engine::state::AdminState;
use switchyard_engine::{Engine, Runtime, Weight};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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

async fn start(config: &str) -> (SocketAddr, Arc<Runtime>) {
    let port = switchyard_testkit::free_port();
    let config = config.replace("{port}", &port.to_string());
    let parsed = parse_sources(&[Source {
        name: "control.cfg".into(),
        text: config,
    }])
    .unwrap();
    let engine = Engine::build(&parsed.config).await.unwrap();
    let addr = engine.local_addrs()[0].1;
    let runtime = engine.runtime();
    tokio::spawn(engine.run());
    (addr, runtime)
}

fn server_line(name: &str, addr: SocketAddr) -> ServerLine {
    let span = Span {
        file: "<cli>".into(),
        line: 0,
    };
    ServerLine::new(span, name.into(), Host::Ip(addr.ip()), Some(addr.port()))
}

async fn ask(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"q\n").await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_line(&mut reply))
        .await
        .ok()?
        .ok()?;
    Some(reply.trim_end().to_string()).filter(|r| !r.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_flow_from_an_empty_backend() {
    let s1 = echo_server("s1").await;
    let (front, runtime) = start(
        "defaults\n mode tcp\n timeout connect 1s\n\
         frontend fe\n bind 127.0.0.1:{port}\n default_backend be_dynamic\n\
         backend be_dynamic\n balance roundrobin\n",
    )
    .await;
    assert_eq!(ask(front).await, None, "an empty backend serves nothing");

    runtime
        .add_server("be_dynamic", server_line("s1", s1), "")
        .await
        .unwrap();
    let err = runtime
        .add_server("be_dynamic", server_line("s1", s1), "")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Already exists a server with the same name in backend."
    );
    // New servers start in maintenance.
    assert_eq!(ask(front).await, None);
    runtime
        .set_admin_state("be_dynamic", "s1", AdminState::Ready)
        .unwrap();
    assert_eq!(ask(front).await.as_deref(), Some("s1:q"));

    // A live session blocks deletion, and so does any state but maintenance.
    let mut live = BufReader::new(TcpStream::connect(front).await.unwrap());
    live.get_mut().write_all(b"x\n").await.unwrap();
    let mut line = String::new();
    live.read_line(&mut line).await.unwrap();
    assert_eq!(
        runtime
            .del_server("be_dynamic", "s1")
            .unwrap_err()
            .to_string(),
        "Only servers in maintenance mode can be deleted."
    );
    runtime
        .set_admin_state("be_dynamic", "s1", AdminState::Maint)
        .unwrap();
    assert_eq!(
        runtime
            .del_server("be_dynamic", "s1")
            .unwrap_err()
            .to_string(),
        "Server still has connections attached to it, cannot remove it."
    );
    // The established session keeps flowing in maintenance; new ones are refused.
    live.get_mut().write_all(b"y\n").await.unwrap();
    line.clear();
    live.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end(), "s1:y");
    assert_eq!(ask(front).await, None);
    drop(live);
    tokio::time::sleep(Duration::from_millis(100)).await;
    runtime.del_server("be_dynamic", "s1").unwrap();
    assert_eq!(
        runtime
            .del_server("be_dynamic", "s1")
            .unwrap_err()
            .to_string(),
        "No such server."
    );
    assert_eq!(
        runtime.backend("nope").unwrap_err().to_string(),
        "No such backend."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_addresses_limits_and_killing_sessions() {
    let a = echo_server("a").await;
    let b = echo_server("b").await;
    let c = echo_server("c").await;
    let (front, runtime) = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n timeout queue 5s\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance roundrobin\n\
         server a {a} weight 10\n server b {b} weight 10\n"
    ))
    .await;
    runtime.set_weight("l", "a", Weight::Percent(50)).unwrap();
    assert_eq!(runtime.get_weight("l", "a").unwrap(), "5 (initial 10)");
    runtime.set_weight("l", "a", Weight::Absolute(0)).unwrap();
    for _ in 0..4 {
        assert_eq!(ask(front).await.as_deref(), Some("b:q"));
    }
    assert_eq!(
        runtime
            .set_weight("l", "a", Weight::Absolute(300))
            .unwrap_err()
            .to_string(),
        "Integer value out of range [0..256]."
    );

    // A new address applies to new sessions.
    let reply = runtime.set_addr("l", "b", c.ip(), Some(c.port())).unwrap();
    assert!(reply.contains("port changed from"), "{reply}");
    assert_eq!(ask(front).await.as_deref(), Some("c:q"));

    // Killing a server's sessions closes the live ones.
    let mut live = TcpStream::connect(front).await.unwrap();
    live.write_all(b"z\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = live.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"c:z\n");
    runtime.shutdown_server_sessions("l", "b").unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), live.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))));

    // maxconn 1 on the only usable server: a second session waits until the first ends.
    runtime.set_server_maxconn("l", "b", 1).unwrap();
    let mut first = BufReader::new(TcpStream::connect(front).await.unwrap());
    first.get_mut().write_all(b"1\n").await.unwrap();
    let mut line = String::new();
    first.read_line(&mut line).await.unwrap();
    let mut second = BufReader::new(TcpStream::connect(front).await.unwrap());
    second.get_mut().write_all(b"2\n").await.unwrap();
    let mut reply = String::new();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.read_line(&mut reply))
            .await
            .is_err()
    );
    runtime.set_server_maxconn("l", "b", 0).unwrap();
    tokio::time::timeout(Duration::from_secs(2), second.read_line(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.trim_end(), "c:2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_algorithms_refuse_dynamic_changes() {
    let a = echo_server("a").await;
    let (_front, runtime) = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance static-rr\n server a {a} weight 10\n"
    ))
    .await;
    assert_eq!(
        runtime
            .set_weight("l", "a", Weight::Absolute(5))
            .unwrap_err()
            .to_string(),
        "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'."
    );
    runtime.set_weight("l", "a", Weight::Percent(0)).unwrap();
    runtime.set_weight("l", "a", Weight::Percent(100)).unwrap();
    assert_eq!(
        runtime
            .add_server("l", server_line("b", a), "")
            .await
            .unwrap_err()
            .to_string(),
        "Backend must use a dynamic load balancing to support dynamic servers."
    );
    assert_eq!(
        runtime
            .set_checks_enabled("l", "a", false)
            .unwrap_err()
            .to_string(),
        "Health checks are not configured on this server, cannot enable."
    );
}

/// HAProxy 2.6 lets a static-rr server set to weight 0 come back with `100%` or its
/// configured weight: both are checked against the configured weight, not the current one
/// (found by the Runtime API parity test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_server_set_to_zero_comes_back() {
    let a = echo_server("a").await;
    let b = echo_server("b").await;
    let (front, runtime) = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n\
         listen l\n bind 127.0.0.1:{{port}}\n balance static-rr\n\
         server a {a} weight 4\n server b {b} weight 4\n"
    ))
    .await;
    let served = |n: usize| async move {
        let mut names = Vec::new();
        for _ in 0..n {
            names.push(ask(front).await.unwrap_or_default());
        }
        names.sort();
        names.dedup();
        names
    };
    for back in [Weight::Percent(100), Weight::Absolute(4)] {
        runtime.set_weight("l", "a", Weight::Absolute(0)).unwrap();
        assert_eq!(runtime.get_weight("l", "a").unwrap(), "0 (initial 4)");
        assert_eq!(served(4).await, ["b:q"]);
        // Still only all or nothing, measured against the configured weight.
        for refused in [Weight::Absolute(2), Weight::Percent(50)] {
            assert_eq!(
                runtime
                    .set_weight("l", "a", refused)
                    .unwrap_err()
                    .to_string(),
                "Backend is using a static LB algorithm and only accepts weights '0%' and \
                 '100%'."
            );
        }
        runtime.set_weight("l", "a", back).unwrap();
        assert_eq!(runtime.get_weight("l", "a").unwrap(), "4 (initial 4)");
        assert_eq!(served(4).await, ["a:q", "b:q"], "after {back:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_can_be_shut_down_one_by_one() {
    let a = echo_server("a").await;
    let (front, runtime) = start(&format!(
        "defaults\n mode tcp\n timeout connect 1s\n\
         listen l\n bind 127.0.0.1:{{port}}\n server a {a}\n"
    ))
    .await;
    let mut first = BufReader::new(TcpStream::connect(front).await.unwrap());
    let mut second = BufReader::new(TcpStream::connect(front).await.unwrap());
    for (stream, text) in [(&mut first, "1"), (&mut second, "2")] {
        stream
            .get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
    }
    let sessions = runtime.process.sessions.list();
    assert_eq!(sessions.len(), 2);
    // Ids follow registration, which two session tasks may reach in either order: find the
    // first connection's session by its address.
    let first_addr = first.get_ref().local_addr().unwrap();
    let doomed = sessions
        .iter()
        .find(|s| s.client == first_addr)
        .expect("the first connection's session is listed");
    assert_eq!(doomed.frontend.name, "l");
    assert_eq!(
        doomed.server_names(),
        Some(("l".to_string(), "a".to_string()))
    );
    runtime.shutdown_session(doomed.id).unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), first.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))));
    // The other session is untouched.
    second.get_mut().write_all(b"still\n").await.unwrap();
    let mut line = String::new();
    second.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end(), "a:still");
    // The killed session leaves the registry once its task has finished.
    for _ in 0..200 {
        if runtime.process.sessions.list().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runtime.process.sessions.list().len(), 1);
    assert!(runtime.shutdown_session(9999).is_err());
}
