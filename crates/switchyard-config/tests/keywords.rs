//! Keyword coverage, diagnostics with exact file:line, multi-file and defaults inheritance.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_config::*;

fn src(name: &str, text: &str) -> Source {
    Source {
        name: name.into(),
        text: text.into(),
    }
}

fn ok(text: &str) -> Parsed {
    match parse_sources(&[src("t.cfg", text)]) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Rendered errors (and warnings) of a configuration that must fail.
fn errs(text: &str) -> Vec<String> {
    match parse_sources(&[src("t.cfg", text)]) {
        Ok(p) => panic!("expected errors, got config with warnings {:?}", p.warnings),
        Err(Diagnostics(d)) => d.iter().map(|d| d.to_string()).collect(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.iter().map(|d| d.to_string()).collect()
}

/// Every diagnostic, whether the configuration is accepted or not.
fn diagnostics_of(text: &str) -> Vec<String> {
    match parse_sources(&[Source {
        name: "t.cfg".into(),
        text: text.into(),
    }]) {
        Ok(p) => p.warnings,
        Err(Diagnostics(d)) => d,
    }
    .iter()
    .map(|d| d.to_string())
    .collect()
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|l| l.contains(needle))
}

fn inet(s: &str) -> SocketAddress {
    SocketAddress::Inet(s.parse::<SocketAddr>().unwrap())
}

const BE: &str = "backend be\n    server s1 127.0.0.1:5432\n";

#[test]
fn empty_config() {
    let p = ok("");
    assert!(p.config.proxies.is_empty());
    assert!(p.warnings.is_empty());
    ok("# only a comment\n\n   \n");
}

#[test]
fn global_keywords() {
    let p = ok(r#"
global
    maxconn 5000
    log 127.0.0.1 local2
    log 127.0.0.1:1514 len 4096 format rfc5424 local0 info notice
    log stderr format short daemon
    log udp@10.0.0.1:5140 local7 err
    log-send-hostname myhost
    log-tag "sw proxy"
    stats socket ipv4@127.0.0.1:9999 level operator expose-fd listeners
    stats socket ipv6@:::9998
    stats socket unix@/run/sw.sock mode 600
    user sw
    group sw
    daemon
    nbthread 4
    pidfile /run/sw.pid
    hard-stop-after 1m
    runtime-state-file /var/lib/switchyard/state.json
    nosplice
"#);
    let g = &p.config.global;
    assert!(g.nosplice);
    assert!(!ok("global\n maxconn 10\n").config.global.nosplice);
    assert_eq!(g.maxconn, Some(5000));
    assert_eq!(g.logs.len(), 4);
    let l = &g.logs[0];
    assert_eq!(
        (l.address.clone(), l.facility, l.max_level, l.format),
        (
            LogAddress::Udp("127.0.0.1:514".parse().unwrap()),
            Facility::Local2,
            Level::Debug,
            LogFormat::Rfc3164
        )
    );
    assert_eq!(l.span.line, 4);
    let l = &g.logs[1];
    assert_eq!(
        (l.max_len, l.format, l.max_level, l.min_level),
        (
            Some(4096),
            LogFormat::Rfc5424,
            Level::Info,
            Some(Level::Notice)
        )
    );
    assert_eq!(
        (g.logs[2].address.clone(), g.logs[2].format),
        (LogAddress::Stderr, LogFormat::Short)
    );
    assert_eq!(g.logs[3].facility, Facility::Local7);
    assert_eq!(g.log_send_hostname.as_deref(), Some("myhost"));
    assert_eq!(g.log_tag.as_deref(), Some("sw proxy"));
    assert_eq!(g.stats_sockets.len(), 3);
    assert_eq!(g.stats_sockets[0].address, inet("127.0.0.1:9999"));
    assert_eq!(g.stats_sockets[0].params, ["expose-fd", "listeners"]);
    assert_eq!(g.stats_sockets[1].address, inet("[::]:9998"));
    assert_eq!(g.stats_sockets[2].mode, Some(0o600));
    assert_eq!(
        (g.user.as_deref(), g.group.as_deref()),
        (Some("sw"), Some("sw"))
    );
    assert!(g.daemon);
    assert_eq!(g.nbthread, Some(4));
    assert_eq!(
        g.pidfile.as_deref(),
        Some(std::path::Path::new("/run/sw.pid"))
    );
    assert_eq!(g.hard_stop_after, Some(Duration::from_secs(60)));
    assert_eq!(
        g.runtime_state_file.as_deref(),
        Some(std::path::Path::new("/var/lib/switchyard/state.json"))
    );
    assert!(p.warnings.is_empty());
}

#[test]
fn global_stats_socket_forms() {
    for (text, want) in [
        ("ipv4@*:9999", inet("0.0.0.0:9999")),
        ("127.0.0.1:9999", inet("127.0.0.1:9999")),
        (
            "/var/run/hap.sock",
            SocketAddress::Unix("/var/run/hap.sock".into()),
        ),
    ] {
        let p = ok(&format!("global\n stats socket {text} level admin\n"));
        assert_eq!(p.config.global.stats_sockets[0].address, want);
    }
    let e = errs("global\n stats socket :1 level god\n stats socket\n stats socket /x mode 999\n");
    assert!(
        has(&e, "t.cfg:2: 'stats socket': unknown level 'god'"),
        "{e:?}"
    );
    assert!(has(&e, "t.cfg:3:"));
    assert!(has(&e, "t.cfg:4: 'stats socket': invalid octal mode '999'"));
}

#[test]
fn unimplemented_globals_warn() {
    let w = warnings("global\n chroot /var/lib/haproxy\n tune.ssl.default-dh-param 2048\n ssl-default-bind-ciphers X\n ca-base /etc/ssl\n nbproc 1\n cpu-map 1 0\n uid 99\n gid 99\n ulimit-n 1000\n master-worker\n quiet\n lua-load /x.lua\n spread-checks 5\n external-check\n insecure-fork-wanted\n crt-base /x\n stats timeout 30s\n");
    assert_eq!(w.len(), 17);
    assert_eq!(
        w[0],
        "t.cfg:2: warning: 'chroot' is not implemented yet, ignored"
    );
    assert_eq!(
        w[16],
        "t.cfg:18: warning: 'stats timeout' is not implemented yet, ignored"
    );
}

#[test]
fn global_errors() {
    let e = errs("global\n maxconn 0\n maxconn abc\n nbthread\n bogus 1\n log global\n log 1.2.3.4 nofac\n log 1.2.3.4 local0 loud\n hard-stop-after 5q\n");
    let want = [
        "t.cfg:2: 'maxconn' '0': expects a positive number",
        "t.cfg:3: 'maxconn' 'abc' is not a valid number",
        "t.cfg:4: 'nbthread' expects an argument",
        "t.cfg:5: unknown keyword 'bogus' in 'global' section",
        "t.cfg:6: 'log global' is only valid in proxies",
        "t.cfg:7: 'log': unknown facility 'nofac'",
        "t.cfg:8: 'log': unknown level 'loud'",
        "t.cfg:9: 'hard-stop-after': '5q': unknown time unit 'q' (expected us, ms, s, m, h or d)",
    ];
    assert_eq!(e, want);
}

/// `busy-polling`, and the negations HAProxy 2.6 accepts in `global`: the last line wins.
#[test]
fn global_busy_polling_and_negations() {
    let p = ok("global\n busy-polling\n");
    assert!(p.config.global.busy_polling);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(!ok("global\n maxconn 10\n").config.global.busy_polling);
    assert!(
        !ok("global\n busy-polling\n no busy-polling\n")
            .config
            .global
            .busy_polling
    );
    assert!(
        ok("global\n no busy-polling\n busy-polling\n")
            .config
            .global
            .busy_polling
    );
    // `no log` drops the log targets declared above it.
    let g = ok("global\n log 127.0.0.1 local0\n no log\n log stderr daemon\n")
        .config
        .global;
    assert_eq!(g.logs.len(), 1);
    assert_eq!(g.logs[0].address, LogAddress::Stderr);
    assert_eq!(
        warnings("global\n no strict-limits\n"),
        ["t.cfg:2: warning: 'no strict-limits' is not implemented yet, ignored"]
    );
    assert_eq!(
        errs("global\n busy-polling on\n no busy-polling 1\n no maxconn\n no\n"),
        [
            "t.cfg:2: 'busy-polling' takes no argument",
            "t.cfg:3: 'no busy-polling' takes no argument",
            "t.cfg:4: 'no maxconn': in 'global', only 'busy-polling', 'log', 'set-dumpable', \
             'strict-limits', 'insecure-fork-wanted' and 'numa-cpu-mapping' accept 'no'",
            "t.cfg:5: 'no' expects a keyword to negate",
        ]
    );
}

#[test]
fn out_of_section_keyword() {
    assert_eq!(
        errs("maxconn 10\n"),
        ["t.cfg:1: unknown keyword 'maxconn' out of section"]
    );
}

#[test]
fn unterminated_quote_names_line() {
    let e = errs("global\n log-tag \"abc\n");
    assert_eq!(e, ["t.cfg:2: unterminated double quote"]);
}

#[test]
fn skipped_sections_warn_once() {
    let w = warnings("userlist users\n user a password x\npeers p\n peer a 1.2.3.4:1\nring dns\n size 32764\ncache c\n total-max-size 4\nprogram p\n command x\nmailers m\n mailer a 1.2.3.4:25\nglobal\n maxconn 5\n");
    assert_eq!(w.len(), 6);
    assert_eq!(
        w[0],
        "t.cfg:1: warning: 'userlist' sections are not implemented yet, section ignored"
    );
    assert!(w[5].starts_with("t.cfg:11:"));
}

#[test]
fn binds() {
    let text = format!(
        "frontend fe\n bind *:5432\n bind :5433 name n maxconn 10 backlog 20 accept-proxy transparent\n bind [::]:5434 v6only\n bind :::5435 v4v6\n bind ipv4@0.0.0.0:5000-5002,ipv6@[::1]:6000\n bind /run/pg.sock\n default_backend be\n{BE}"
    );
    let p = ok(&text);
    let fe = p.config.proxy("fe").unwrap();
    let b = &fe.binds;
    assert_eq!(b[0].addresses, [inet("0.0.0.0:5432")]);
    assert_eq!(b[1].addresses, [inet("0.0.0.0:5433")]);
    assert_eq!(
        (
            b[1].name.as_deref(),
            b[1].maxconn,
            b[1].backlog,
            b[1].accept_proxy,
            b[1].transparent
        ),
        (Some("n"), Some(10), Some(20), true, true)
    );
    assert_eq!(
        (b[2].addresses.clone(), b[2].v6only),
        (vec![inet("[::]:5434")], Some(true))
    );
    assert_eq!(
        (b[3].addresses.clone(), b[3].v6only),
        (vec![inet("[::]:5435")], Some(false))
    );
    assert_eq!(
        b[4].addresses,
        [
            inet("0.0.0.0:5000"),
            inet("0.0.0.0:5001"),
            inet("0.0.0.0:5002"),
            inet("[::1]:6000")
        ]
    );
    assert_eq!(b[5].addresses, [SocketAddress::Unix("/run/pg.sock".into())]);
    assert_eq!(b[4].span.line, 6);
}

#[test]
fn bind_unimplemented_options_warn_and_errors() {
    let w = warnings(&format!("frontend fe\n bind :443 ssl crt /x.pem alpn h2 interface eth0 process 1\n default_backend be\n{BE}"));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(has(&w, "'bind interface' is not implemented yet, ignored"));
    let parsed = ok(&format!("frontend fe\n bind :443 ssl crt /a.pem crt /b.pem alpn h2,http/1.1 postgres-ssl\n default_backend be\n{BE}"));
    let bind = &parsed.config.proxies[0].binds[0];
    assert!(bind.ssl && bind.postgres_ssl);
    assert_eq!(bind.certificates.len(), 2);
    assert_eq!(bind.alpn, ["h2", "http/1.1"]);
    let e = errs(&format!(
        "frontend fe\n bind :443 ssl\n bind :444 crt /a.pem\n default_backend be\n{BE}"
    ));
    assert!(
        has(&e, "t.cfg:2: 'bind ... ssl' needs at least one 'crt FILE'"),
        "{e:?}"
    );
    assert!(
        has(&e, "t.cfg:3: 'crt' and 'postgres-ssl' need 'ssl'"),
        "{e:?}"
    );
    let e = errs(&format!("frontend fe\n bind :0\n bind :70000\n bind 1.2.3.4\n bind :1 bogus\n bind :2 maxconn 0\n bind\n default_backend be\n{BE}"));
    assert!(
        has(&e, "t.cfg:2: 'bind': port '0' out of range (1-65535)"),
        "{e:?}"
    );
    assert!(has(&e, "t.cfg:3: 'bind': port '70000' out of range"));
    assert!(has(&e, "t.cfg:4: 'bind': missing port"));
    assert!(has(&e, "t.cfg:5: 'bind': unknown keyword 'bogus'"));
    assert!(has(&e, "t.cfg:6: 'bind maxconn'"));
    assert!(has(&e, "t.cfg:7: 'bind' expects an address"));
}

#[test]
fn capabilities() {
    let e = errs("backend be\n bind :1\n default_backend x\n use_backend x\nfrontend fe\n bind :2\n server s 1.2.3.4:1\n default-server check\n default_backend be\ndefaults\n bind :3\n server s 1.1.1.1\n use_backend be\n id 5\n");
    assert_eq!(
        e,
        [
            "t.cfg:2: 'bind' not allowed in 'backend' section",
            "t.cfg:3: 'default_backend' not allowed in 'backend' section",
            "t.cfg:4: 'use_backend' not allowed in 'backend' section",
            "t.cfg:7: 'server' not allowed in 'frontend' section",
            "t.cfg:8: 'default-server' not allowed in 'frontend' section",
            "t.cfg:11: 'bind' not allowed in 'defaults' section",
            "t.cfg:12: 'server' not allowed in 'defaults' section",
            "t.cfg:13: 'use_backend' not allowed in 'defaults' section",
            "t.cfg:14: 'id' not allowed in 'defaults' section",
        ]
    );
    // Soft mismatches are warnings, as in HAProxy.
    let w = warnings(&format!("frontend fe\n bind :1\n balance leastconn\n timeout server 5s\n retries 2\n default_backend be\n{BE} maxconn 10\n timeout client 1s\n"));
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(has(
        &w,
        "t.cfg:3: warning: 'balance' ignored because frontend 'fe' has no backend capability"
    ));
    assert!(has(
        &w,
        "t.cfg:9: warning: 'maxconn' ignored because backend 'be' has no frontend capability"
    ));
    assert!(has(&w, "t.cfg:10: warning: 'timeout client' ignored"));
}

#[test]
fn modes() {
    let p = ok("listen l\n mode tcp\n bind :1\n server s 1.1.1.1:1\n");
    assert_eq!(p.config.proxies[0].mode, Mode::Tcp);
    // An http proxy that starts nothing is harmless.
    let p = ok("backend b\n mode http\n");
    assert_eq!(p.config.proxies[0].mode, Mode::Http);
    let p = ok("listen l\n mode http\n bind :1\n server s 1.1.1.1:1\n");
    assert_eq!(p.config.proxies[0].mode, Mode::Http);
    let e = errs("backend b\n mode health\n mode udp\n mode\n");
    assert_eq!(
        e,
        [
            "t.cfg:2: mode health is not supported (removed from HAProxy); use mode tcp",
            "t.cfg:3: unknown mode 'udp' (expected tcp or http)",
            "t.cfg:4: 'mode' expects one of tcp or http",
        ]
    );
    // Inherited from defaults.
    let p = ok("defaults\n mode http\nbackend b\n server s 1.1.1.1:1\n");
    assert_eq!(p.config.proxies[0].mode, Mode::Http);
}

#[test]
fn routing_rules() {
    let p = ok("frontend fe\n bind :1\n use_backend a\n use_backend b if { src 1.2.3.4 }\n use_backend c unless x\n default_backend b\nbackend a\nbackend b\n");
    let fe = p.config.proxy("fe").unwrap();
    assert_eq!(
        fe.use_backends,
        [UseBackend {
            span: Span {
                file: "t.cfg".into(),
                line: 3
            },
            backend: "a".into()
        }]
    );
    assert_eq!(fe.default_backend.as_deref(), Some("b"));
    let w: Vec<String> = p.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        [
            "t.cfg:4: warning: conditions are not implemented yet; rule ignored",
            "t.cfg:5: warning: conditions are not implemented yet; rule ignored"
        ]
    );
    let e = errs("frontend fe\n bind :1\n use_backend missing\n use_backend fe2\n default_backend nope\n use_backend a foo\nfrontend fe2\n bind :2\n default_backend fe\n");
    assert_eq!(
        e,
        [
            "t.cfg:3: use_backend: no backend named 'missing'",
            "t.cfg:4: use_backend: 'fe2' is a frontend, not a backend",
            "t.cfg:5: default_backend: no backend named 'nope'",
            "t.cfg:6: 'use_backend' expects 'if' or 'unless' followed by a condition",
            "t.cfg:9: default_backend: 'fe' is a frontend, not a backend",
        ]
    );
}

#[test]
fn balance_algorithms() {
    let cases = [
        ("roundrobin", Balance::RoundRobin),
        ("static-rr", Balance::StaticRr),
        ("leastconn", Balance::LeastConn),
        ("first", Balance::First),
        ("source", Balance::Source),
        ("random", Balance::Random { draws: 2 }),
        ("random(5)", Balance::Random { draws: 5 }),
        ("uri", Balance::Uri),
        ("uri whole len 10", Balance::Uri),
        ("url_param userid", Balance::UrlParam("userid".into())),
        ("hdr(Host)", Balance::Hdr("Host".into())),
        ("rdp-cookie", Balance::RdpCookie(None)),
        (
            "rdp-cookie(mstshash)",
            Balance::RdpCookie(Some("mstshash".into())),
        ),
    ];
    for (text, want) in cases {
        let p = ok(&format!("backend b\n balance {text}\n"));
        assert_eq!(p.config.proxies[0].balance, want, "{text}");
    }
    let e = errs("backend b\n balance fastest\n balance\n balance random(0)\n balance hdr()\n balance leastconn extra\n balance url_param\n");
    assert!(
        e[0].starts_with(
            "t.cfg:2: unknown balance algorithm 'fastest' (known: roundrobin, static-rr, leastconn"
        ),
        "{e:?}"
    );
    assert_eq!(e.len(), 6);
    assert!(e[1].starts_with("t.cfg:3:"));
}

#[test]
fn hash_types() {
    let get = |t: &str| ok(&format!("backend b\n hash-type {t}\n")).config.proxies[0].hash_type;
    assert_eq!(
        get("map-based"),
        HashType {
            method: HashMethod::MapBased,
            function: HashFunction::Sdbm,
            avalanche: false
        }
    );
    assert_eq!(
        get("consistent"),
        HashType {
            method: HashMethod::Consistent,
            function: HashFunction::Sdbm,
            avalanche: false
        }
    );
    assert_eq!(
        get("consistent djb2"),
        HashType {
            method: HashMethod::Consistent,
            function: HashFunction::Djb2,
            avalanche: false
        }
    );
    assert_eq!(get("consistent wt6 avalanche").function, HashFunction::Wt6);
    assert!(get("map-based crc32 avalanche").avalanche);
    assert!(get("consistent avalanche").avalanche);
    let e = errs("backend b\n hash-type ring\n hash-type consistent md5\n hash-type consistent sdbm avalanche x\n hash-type\n");
    assert_eq!(e.len(), 4);
}

#[test]
fn server_settings() {
    let p = ok("backend b\n server s1 10.0.0.1:5432 check inter 5s fastinter 1s downinter 10s rise 3 fall 4 port 8008 addr 10.0.0.9 weight 50 backup maxconn 100 maxqueue 10 minconn 5 disabled send-proxy-v2 agent-check agent-port 9000 agent-inter 3s slowstart 30s cookie c1 ssl observe layer4 error-limit 5 on-error mark-down on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions agent-send \"ready\\n\" agent-addr agent.internal id 7\n server s2 db.example.com\n server s3 [::1]:5432 send-proxy weight 0\n server s4 ::1\n");
    let b = &p.config.proxies[0];
    let s = &b.servers[0];
    assert!(s.check && s.backup && s.disabled && s.agent_check && s.ssl && s.observe_layer4);
    assert_eq!(
        (s.inter, s.fastinter, s.downinter),
        (
            Duration::from_secs(5),
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(10))
        )
    );
    assert_eq!(
        (s.rise, s.fall, s.check_port, s.weight),
        (3, 4, Some(8008), 50)
    );
    assert_eq!(s.check_addr, Some(Host::Ip("10.0.0.9".parse().unwrap())));
    assert_eq!(
        (s.maxconn, s.maxqueue, s.minconn),
        (Some(100), Some(10), Some(5))
    );
    assert_eq!(
        (s.send_proxy, s.agent_port, s.agent_inter),
        (
            Some(ProxyProtocol::V2),
            Some(9000),
            Some(Duration::from_secs(3))
        )
    );
    assert_eq!(
        (s.slowstart, s.cookie.as_deref(), s.error_limit),
        (Some(Duration::from_secs(30)), Some("c1"), Some(5))
    );
    assert_eq!(
        (
            s.on_error,
            s.shutdown_sessions_on_down,
            s.shutdown_backup_sessions_on_up
        ),
        (OnError::MarkDown, true, true)
    );
    assert_eq!(
        (s.agent_send.as_deref(), s.agent_addr.clone()),
        (Some("ready\n"), Some(Host::Name("agent.internal".into())))
    );
    assert_eq!(s.id, 7);
    let s2 = &b.servers[1];
    assert_eq!(
        (s2.host.clone(), s2.port, s2.check, s2.weight, s2.inter),
        (
            Host::Name("db.example.com".into()),
            None,
            false,
            1,
            Duration::from_secs(2)
        )
    );
    assert_eq!((s2.rise, s2.fall), (2, 3));
    assert_eq!(b.servers[2].host, Host::Ip("::1".parse().unwrap()));
    assert_eq!(
        (
            b.servers[2].port,
            b.servers[2].send_proxy,
            b.servers[2].weight
        ),
        (Some(5432), Some(ProxyProtocol::V1), 0)
    );
    assert_eq!(
        (b.servers[3].host.clone(), b.servers[3].port),
        (Host::Ip("::1".parse().unwrap()), None)
    );
    // Automatic ids skip the explicit one.
    assert_eq!(
        b.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
        [7, 1, 2, 3]
    );
}

#[test]
fn server_toggles_override_default_server() {
    let p = ok("backend b\n default-server check backup send-proxy inter 1s\n server s1 1.1.1.1:1 no-check no-backup no-send-proxy\n server s2 1.1.1.1:2\n default-server no-check\n server s3 1.1.1.1:3\n");
    let s = &p.config.proxies[0].servers;
    assert_eq!(
        (s[0].check, s[0].backup, s[0].send_proxy, s[0].inter),
        (false, false, None, Duration::from_secs(1))
    );
    assert_eq!(
        (s[1].check, s[1].backup, s[1].send_proxy),
        (true, true, Some(ProxyProtocol::V1))
    );
    assert_eq!((s[2].check, s[2].backup), (false, true));
}

#[test]
fn http_reuse_strategies() {
    let p = ok("defaults\n mode http\n http-reuse always\nbackend b1\n server s 1.1.1.1:1\nbackend b2\n http-reuse never\n server s 1.1.1.1:1\nbackend b3\n http-reuse aggressive\n server s 1.1.1.1:1\n");
    let reuse: Vec<HttpReuse> = p.config.proxies.iter().map(|p| p.http_reuse).collect();
    assert_eq!(
        reuse,
        [HttpReuse::Always, HttpReuse::Never, HttpReuse::Aggressive]
    );
    let p = ok("backend b\n mode http\n server s 1.1.1.1:1\n");
    assert_eq!(p.config.proxies[0].http_reuse, HttpReuse::Safe);
    let e = errs("backend b\n http-reuse sometimes\n");
    assert!(
        has(&e, "t.cfg:2: 'http-reuse' expects 'never', 'safe', 'aggressive' or 'always', got 'sometimes'"),
        "{e:?}"
    );
    let w = warnings("frontend f\n mode http\n bind :80\n http-reuse always\n");
    assert!(has(&w, "http-reuse"), "{w:?}");
}

#[test]
fn max_session_srv_conns() {
    let p = ok("defaults\n mode http\n max-session-srv-conns 2\nfrontend f1\n bind :80\n default_backend b\nfrontend f2\n bind :81\n max-session-srv-conns 0\n default_backend b\nbackend b\n server s 1.1.1.1:1\n");
    let max: Vec<u32> = p
        .config
        .proxies
        .iter()
        .map(|p| p.max_session_srv_conns)
        .collect();
    assert_eq!(max, [2, 0, 2]);
    let p = ok("listen l\n mode http\n bind :80\n server s 1.1.1.1:1\n");
    assert_eq!(
        p.config.proxies[0].max_session_srv_conns, 5,
        "HAProxy's default"
    );
    let e = errs("frontend f\n max-session-srv-conns many\n");
    assert!(has(&e, "t.cfg:2: 'max-session-srv-conns'"), "{e:?}");
    let w = warnings("backend b\n mode http\n max-session-srv-conns 3\n");
    assert!(has(&w, "max-session-srv-conns"), "{w:?}");
}

#[test]
fn server_connection_pool_settings() {
    let p = ok("backend b\n default-server pool-purge-delay 10s\n server s1 1.1.1.1:1 pool-max-conn -1 pool-low-conn 4\n server s2 1.1.1.1:2 pool-max-conn 0 pool-purge-delay 250\n server s3 1.1.1.1:3\n");
    let s = &p.config.proxies[0].servers;
    assert_eq!(
        (
            s[0].pool_max_conn,
            s[0].pool_low_conn,
            s[0].pool_purge_delay
        ),
        (Some(None), 4, Some(Duration::from_secs(10)))
    );
    assert_eq!(
        (s[1].pool_max_conn, s[1].pool_purge_delay),
        (Some(Some(0)), Some(Duration::from_millis(250)))
    );
    assert_eq!((s[2].pool_max_conn, s[2].pool_low_conn), (None, 0));
    let e = errs(
        "backend b\n server s1 1.1.1.1:1 pool-max-conn -2 pool-purge-delay soon pool-low-conn\n",
    );
    assert!(
        has(&e, "t.cfg:2: server setting 'pool-max-conn': '-2' is not a valid number (expects -1 or more)"),
        "{e:?}"
    );
    assert!(has(&e, "server setting 'pool-purge-delay'"), "{e:?}");
    assert!(
        has(&e, "server setting 'pool-low-conn' expects an argument"),
        "{e:?}"
    );
}

#[test]
fn server_unimplemented_settings_warn() {
    let w = warnings("resolvers dns\n parse-resolv-conf\nbackend b\n server s1 1.1.1.1:1 check verify none ca-file /x sni str(x) check-ssl resolvers dns init-addr last,libc resolve-prefer ipv4 track b2/s1 observe layer7\n");
    assert_eq!(w.len(), 4, "{w:?}");
    assert_eq!(
        w[0],
        "t.cfg:4: warning: server setting 'check-ssl' is not implemented yet, ignored"
    );
    let p = ok("backend b\n server s1 db.example:5432 ssl verify required ca-file /etc/ca.pem sni str(db.example)\n");
    let s = &p.config.proxies[0].servers[0];
    assert!(s.ssl && !s.verify_none);
    assert_eq!(
        s.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    assert_eq!(s.sni.as_deref(), Some("db.example"));
    let e = errs("backend b\n server s1 1.1.1.1:1 ssl verify sometimes sni req.hdr(host)\n");
    assert!(
        has(
            &e,
            "server setting 'verify': expects 'none' or 'required', got 'sometimes'"
        ),
        "{e:?}"
    );
    assert!(
        has(&e, "server setting 'sni': only 'str(NAME)' is supported"),
        "{e:?}"
    );
}

#[test]
fn resolvers_sections_and_server_references() {
    let p = ok("resolvers dc1\n nameserver ns1 10.0.0.53\n nameserver ns2 udp@[fd00::53]:5353\n                 resolve_retries 5\n timeout resolve 2s\n timeout retry 500ms\n hold valid 30s\n                 hold nx 5s\n accepted_payload_size 8192\n\
                backend b\n server s1 db1.dc1.example:5432 resolvers dc1 resolve-prefer ipv4\n");
    let r = &p.config.resolvers[0];
    assert_eq!(r.name, "dc1");
    assert_eq!(
        r.nameservers,
        [
            ("ns1".to_string(), "10.0.0.53:53".parse().unwrap()),
            ("ns2".to_string(), "[fd00::53]:5353".parse().unwrap()),
        ]
    );
    assert_eq!(r.resolve_retries, 5);
    assert_eq!(r.timeout_resolve, Duration::from_secs(2));
    assert_eq!(r.timeout_retry, Duration::from_millis(500));
    assert_eq!(r.hold_valid, Duration::from_secs(30));
    let s = &p.config.proxies[0].servers[0];
    assert_eq!(s.resolvers.as_deref(), Some("dc1"));
    assert_eq!(s.resolve_prefer, Some(IpFamily::Ipv4));
    assert_eq!(s.host, Host::Name("db1.dc1.example".into()));
}

#[test]
fn resolvers_errors_name_the_line() {
    let e = errs("resolvers empty\n timeout resolve\n nameserver ns1 dns.example:53\n bogus 1\n\
                  backend b\n server s1 db1:5432 resolve-prefer ipv5\n server s2 db2:5432 resolvers nowhere\n");
    assert_eq!(
        e,
        [
            "t.cfg:1: resolvers 'empty' has no 'nameserver' and no 'parse-resolv-conf'",
            "t.cfg:2: 'timeout' expects 'resolve' or 'retry' and a duration",
            "t.cfg:3: 'nameserver ns1': 'dns.example' is not an IP address",
            "t.cfg:4: unknown keyword 'bogus' in 'resolvers' section",
            "t.cfg:6: server setting 'resolve-prefer': 'resolve-prefer' expects 'ipv4' or 'ipv6', got 'ipv5'",
            "t.cfg:7: server 'b/s2' refers to unknown resolvers section 'nowhere'",
        ]
    );
}

#[test]
fn server_errors() {
    let e = errs("backend b\n server s1 1.1.1.1:1 weight 257\n server s2 1.1.1.1:1 bogus\n server s3\n server s4 1.1.1.1:99999\n server s5 1.1.1.1:1 inter\n server s6 1.1.1.1:1 rise 0 fall x\n server s7 1.1.1.1:1 inter 0\n server s8 1.1.1.1:1 observe layer9 on-error explode\n default-server id 3\n server s9 bad!host:1 bogus2\n");
    let want = [
        "t.cfg:2: server setting 'weight': 257 is out of range (0-256)",
        "t.cfg:3: unknown keyword 'bogus' in 'server' line",
        "t.cfg:4: 'server' expects <name> and <address>[:<port>]",
        "t.cfg:5: server 's4': port '99999' out of range (1-65535)",
        "t.cfg:6: server setting 'inter' expects an argument",
        "t.cfg:7: server setting 'rise': '0': expects a positive number",
        "t.cfg:7: server setting 'fall': 'x' is not a valid number",
        "t.cfg:8: server setting 'inter': expects a positive delay",
        "t.cfg:9: server setting 'observe': unknown mode 'layer9' (expected layer4 or layer7)",
        "t.cfg:9: server setting 'on-error': unknown action 'explode' (expected fastinter, fail-check, sudden-death, mark-down)",
        "t.cfg:10: server setting 'id': not allowed in 'default-server'",
        "t.cfg:11: server 's9': invalid server address 'bad!host:1'",
        "t.cfg:11: unknown keyword 'bogus2' in 'server' line",
    ];
    assert_eq!(e, want);
}

#[test]
fn duplicate_servers_and_ids() {
    let e = errs("backend b\n server s1 1.1.1.1:1\n server s1 1.1.1.1:2\n server s2 1.1.1.1:3 id 4\n server s3 1.1.1.1:4 id 4\n");
    assert_eq!(
        e,
        [
            "t.cfg:3: backend 'b': another server named 's1' was already declared at t.cfg:2",
            "t.cfg:5: server 's3' has the same id 4 as server 's2' in backend 'b'",
        ]
    );
}

#[test]
fn proxy_names_and_ids() {
    // A frontend and a backend may share a name.
    let p = ok("frontend app\n bind :1\n default_backend app\nbackend app\n server s 1.1.1.1:1\nlisten l\n id 1\n bind :2\n server s 1.1.1.1:1\n");
    let ids: Vec<_> = p
        .config
        .proxies
        .iter()
        .map(|p| (p.name.as_str(), p.kind, p.id))
        .collect();
    assert_eq!(
        ids,
        [
            ("app", ProxyKind::Frontend, 2),
            ("app", ProxyKind::Backend, 3),
            ("l", ProxyKind::Listen, 1)
        ]
    );
    let p = ok("backend a\n id 10\nbackend b\nbackend c\n id 2\n");
    // Explicit ids are taken first; automatic ones fill the lowest free slots.
    assert_eq!(
        p.config.proxies.iter().map(|p| p.id).collect::<Vec<_>>(),
        [10, 1, 2]
    );
    let e = errs("backend a\nbackend a\nlisten b\nfrontend b\n bind :1\nbackend c\n id 3\nbackend d\n id 3\nbackend bad/name\n");
    assert_eq!(
        e,
        [
            "t.cfg:2: backend 'a' has the same name as backend 'a' declared at t.cfg:1",
            "t.cfg:4: frontend 'b' has the same name as listen 'b' declared at t.cfg:3",
            "t.cfg:4: warning: frontend 'b' has no backend (no default_backend, use_backend or server); connections will be rejected",
            "t.cfg:8: backend 'd' has the same id 3 as 'c'",
            "t.cfg:10: invalid character in backend name 'bad/name'",
        ]
    );
}

#[test]
fn frontend_warnings() {
    let w = warnings("frontend fe\n default_backend be\nbackend be\nfrontend lonely\n bind :1\nlisten l\n bind :2\nlisten backend_like\n");
    assert_eq!(
        w,
        [
            "t.cfg:1: warning: frontend 'fe' has no 'bind' directive; declare it as a backend if this was intended",
            "t.cfg:4: warning: frontend 'lonely' has no backend (no default_backend, use_backend or server); connections will be rejected",
            "t.cfg:6: warning: listen 'l' has no backend (no default_backend, use_backend or server); connections will be rejected",
        ]
    );
}

#[test]
fn kernel_forward_outside_mode_tcp_is_reported() {
    let w = warnings("defaults\n option kernel-forward\nlisten db\n bind :1\n server s 127.0.0.1:2\nfrontend web\n mode http\n bind :3\n default_backend app\nbackend app\n mode http\n no option kernel-forward\n server s 127.0.0.1:4\n");
    assert_eq!(
        w,
        ["t.cfg:6: warning: frontend 'web': 'option kernel-forward' applies to 'mode tcp' only; ignored in 'mode http'"]
    );
    let p = ok("defaults\n option kernel-forward\nlisten db\n bind :1\n server s 127.0.0.1:2\n");
    assert!(p.config.proxy("db").unwrap().options.kernel_forward);
}

#[test]
fn listen_old_form_with_address() {
    let p = ok("listen pg 0.0.0.0:5432\n server s 1.1.1.1:5432\n");
    let l = &p.config.proxies[0];
    assert_eq!(l.binds[0].addresses, [inet("0.0.0.0:5432")]);
    assert_eq!(l.binds[0].span.line, 1);
    assert_eq!(
        errs("listen pg 0.0.0.0\n"),
        ["t.cfg:1: missing port in bind address '0.0.0.0'"]
    );
}

#[test]
fn proxy_settings() {
    let p = ok("frontend fe\n bind :1\n maxconn 100\n description main  entry\n disabled\n enabled\n id 42\n option tcplog\n option clitcpka\n option logasap\n option http-ignore-probes\n default_backend be\nbackend be\n fullconn 50\n retries 0\n option redispatch 2\n option srvtcpka\n option tcpka\n option allbackups\n option httplog\n option dontlognull\n disabled\n");
    let fe = p.config.proxy("fe").unwrap();
    assert_eq!(
        (fe.maxconn, fe.description.as_deref(), fe.disabled, fe.id),
        (Some(100), Some("main entry"), false, 42)
    );
    assert!(fe.options.tcplog && fe.options.clitcpka && fe.options.logasap);
    assert!(fe.options.http_ignore_probes);
    let be = p
        .config
        .proxies
        .iter()
        .find(|p| p.kind == ProxyKind::Backend)
        .unwrap();
    assert_eq!(
        (be.fullconn, be.retries, be.options.redispatch, be.disabled),
        (Some(50), 0, Some(2), true)
    );
    let o = &be.options;
    assert!(o.srvtcpka && o.tcpka && o.allbackups && o.httplog && o.dontlognull);
}

#[test]
fn options_negation_and_errors() {
    let p = ok("defaults\n option redispatch\n option tcplog\nbackend b\n no option redispatch\n no option tcplog\n");
    assert_eq!(
        (
            p.config.proxies[0].options.redispatch,
            p.config.proxies[0].options.tcplog
        ),
        (None, false)
    );
    // Health-check options are implemented (tests/health_checks.rs); others still warn.
    let w = warnings("backend b\n option httpchk GET /\n http-check expect status 200\n option forwardfor\n option http-server-close\n option httpclose\n option abortonclose\n option log-health-checks\n option splice-auto\n no option abortonclose\n");
    assert_eq!(
        w,
        [
            "t.cfg:7: warning: 'option abortonclose' is not implemented yet, ignored",
            "t.cfg:9: warning: 'option splice-auto' is not implemented yet, ignored",
            "t.cfg:10: warning: 'no option abortonclose' is not implemented yet, ignored",
        ]
    );
    // HTTP connection modes: the last one wins.
    let p = ok("defaults\n option http-server-close\nbackend b\n option httpclose\nbackend c\n option forwardfor except 10.0.0.0/8\nbackend d\n option http-keep-alive\n");
    let o = |i: usize| &p.config.proxies[i].options;
    assert!(o(0).httpclose && !o(0).http_server_close);
    assert!(o(1).http_server_close && !o(1).httpclose);
    assert_eq!(
        o(1).forwardfor
            .as_ref()
            .map(|f| (f.except, f.header.as_str())),
        Some((Some(("10.0.0.0".parse().unwrap(), 8)), "X-Forwarded-For"))
    );
    assert!(!o(2).http_server_close && !o(2).httpclose);
    let e = errs("backend b\n option forwardfor except nowhere\n cookie S insert rewrite\n");
    assert_eq!(
        e,
        [
            "t.cfg:2: 'option forwardfor except': 'nowhere' is not an address or network (expected ADDR[/LEN])",
            "t.cfg:3: 'cookie': 'rewrite' conflicts with another of insert, rewrite or prefix",
        ]
    );
    let p = ok("backend b\n cookie SRV insert indirect nocache\n server s1 1.1.1.1:1 cookie a\n");
    let cookie = p.config.proxies[0].cookie.as_ref().unwrap();
    assert_eq!(
        (cookie.name.as_str(), cookie.mode),
        ("SRV", CookieMode::Insert)
    );
    assert_eq!(p.config.proxies[0].servers[0].cookie.as_deref(), Some("a"));
    let e = errs("backend b\n option fly\n option\n option tcplog extra\n option redispatch x\n no\n no maxconn\n");
    assert_eq!(
        e,
        [
            "t.cfg:2: unknown option 'fly'",
            "t.cfg:3: 'option' expects an option name",
            "t.cfg:4: 'option tcplog': unexpected argument 'extra'",
            "t.cfg:5: 'option redispatch': invalid interval 'x'",
            "t.cfg:6: 'no' expects 'option NAME' or 'log'",
            "t.cfg:7: 'no' expects 'option NAME' or 'log'",
        ]
    );
}

#[test]
fn timeouts() {
    let p = ok("defaults\n timeout connect 5s\n timeout client 1m\n timeout server 1m\n timeout queue 10s\n timeout check 2s\n timeout http-request 10s\n timeout http-keep-alive 1s\n timeout client-fin 1s\n timeout server-fin 2s\n timeout tunnel 1h\n timeout tarpit 3s\nbackend b\n timeout connect 250\n");
    let t = p.config.proxies[0].timeouts;
    let s = Duration::from_secs;
    assert_eq!(
        t.connect,
        Some(Duration::from_millis(250)),
        "no unit = milliseconds"
    );
    assert_eq!(
        (t.client, t.server, t.queue, t.check),
        (Some(s(60)), Some(s(60)), Some(s(10)), Some(s(2)))
    );
    assert_eq!(
        (
            t.http_request,
            t.http_keep_alive,
            t.client_fin,
            t.server_fin
        ),
        (Some(s(10)), Some(s(1)), Some(s(1)), Some(s(2)))
    );
    assert_eq!((t.tunnel, t.tarpit), (Some(s(3600)), Some(s(3))));
    let w = warnings("backend b\n contimeout 5000\n srvtimeout 10s\nlisten l\n clitimeout 20s\n");
    assert_eq!(
        w[0],
        "t.cfg:2: warning: 'contimeout' is deprecated, use 'timeout connect' instead"
    );
    assert_eq!(w.len(), 3);
    let p = ok("backend b\n contimeout 5000\n");
    assert_eq!(p.config.proxies[0].timeouts.connect, Some(s(5)));
    let e = errs("backend b\n timeout forever 5s\n timeout connect\n timeout connect 5x\n timeout connect 30d\n");
    assert_eq!(e.len(), 4);
    assert!(e[0].starts_with("t.cfg:2: unknown timeout 'forever'"));
    assert!(e[3].starts_with("t.cfg:5: 'timeout connect': timer overflow"));
}

#[test]
fn proxy_logs() {
    let p = ok("global\n log 127.0.0.1 local0\n log 127.0.0.2 local1\nbackend b\n log 10.0.0.1:514 local2 info\n log global\n log /dev/log local3\nbackend c\n log global\n no log\n");
    let b = &p.config.proxies[0];
    let lines: Vec<u32> = b.logs.iter().map(|l| l.span.line).collect();
    assert_eq!(lines, [5, 2, 3, 7], "log global expands in place");
    assert!(b.options.log_global);
    let c = &p.config.proxies[1];
    assert!(c.logs.is_empty() && !c.options.log_global);
    // `log global` works even when the global section comes later (another file).
    let p = parse_sources(&[
        src("a.cfg", "backend b\n log global\n"),
        src("b.cfg", "global\n log stdout local0\n"),
    ])
    .unwrap();
    assert_eq!(p.config.proxies[0].logs[0].address, LogAddress::Stdout);
    let e = errs("backend b\n log\n log tcp@1.2.3.4:514 local0\n log 1.2.3.4 len x local0\n log 1.2.3.4 format json local0\n log 1.2.3.4\n log 1.2.3.4 local0 info debug extra\n");
    assert_eq!(e.len(), 6, "{e:?}");
}

#[test]
fn unimplemented_proxy_keywords_warn() {
    let kws = [
        "acl a src 1.2.3.4",
        "tcp-request content accept",
        "tcp-response content accept",
        "http-request deny",
        "http-response del-header x",
        "capture request header Host len 10",
        "errorfile 503 /x",
        "compression algo gzip",
        "monitor-uri /m",
        "rate-limit sessions 10",
        "unique-id-format %x",
        "log-format %x",
        "email-alert to x",
        "persist rdp-cookie",
        "source 0.0.0.0",
        "dispatch 1.2.3.4:1",
    ];
    let text = format!(
        "listen l\n{}",
        kws.iter().map(|k| format!(" {k}\n")).collect::<String>()
    );
    let w = warnings(&text);
    assert_eq!(w.len(), kws.len(), "{w:?}");
    assert_eq!(
        w[0],
        "t.cfg:2: warning: 'acl' is not implemented yet, ignored"
    );
    assert_eq!(
        w[2],
        "t.cfg:4: warning: 'tcp-response' is not implemented yet, ignored"
    );
    assert_eq!(
        errs("backend b\n frobnicate 1\n"),
        ["t.cfg:2: unknown keyword 'frobnicate' in 'backend' section"]
    );
    assert_eq!(
        errs("defaults\n frobnicate 1\n"),
        ["t.cfg:2: unknown keyword 'frobnicate' in 'defaults' section"]
    );
}

#[test]
fn defaults_inheritance() {
    let p = ok("defaults\n mode tcp\n balance leastconn\n hash-type consistent\n maxconn 500\n retries 5\n option redispatch\n option dontlognull\n timeout connect 3s\n log 127.0.0.1 local0\n default-server check inter 4s\nfrontend fe\n bind :1\n default_backend be\nbackend be\n server s 1.1.1.1:1\nlisten l\n bind :2\n balance first\n server s 1.1.1.1:1 no-check\n");
    let fe = p.config.proxy("fe").unwrap();
    assert_eq!(fe.maxconn, Some(500));
    let be = p.config.proxies.iter().find(|p| p.name == "be").unwrap();
    assert_eq!(
        (
            be.balance.clone(),
            be.hash_type.method,
            be.retries,
            be.maxconn
        ),
        (Balance::LeastConn, HashMethod::Consistent, 5, None)
    );
    assert_eq!(
        (be.options.redispatch, be.options.dontlognull),
        (Some(-1), true)
    );
    assert_eq!(be.timeouts.connect, Some(Duration::from_secs(3)));
    assert_eq!(be.logs.len(), 1);
    assert_eq!(
        (be.servers[0].check, be.servers[0].inter),
        (true, Duration::from_secs(4))
    );
    let l = p.config.proxy("l").unwrap();
    assert_eq!(
        (l.balance.clone(), l.servers[0].check, l.servers[0].inter),
        (Balance::First, false, Duration::from_secs(4))
    );
}

#[test]
fn new_defaults_resets_to_builtins() {
    let p = ok("defaults\n balance leastconn\n retries 7\n timeout connect 1s\n option tcplog\nbackend a\ndefaults\n timeout server 2s\nbackend b\n");
    let b = &p.config.proxies[1];
    assert_eq!(
        (
            b.balance.clone(),
            b.retries,
            b.timeouts.connect,
            b.timeouts.server,
            b.options.tcplog
        ),
        (
            Balance::RoundRobin,
            3,
            None,
            Some(Duration::from_secs(2)),
            false
        )
    );
    let a = &p.config.proxies[0];
    assert_eq!((a.balance.clone(), a.retries), (Balance::LeastConn, 7));
}

#[test]
fn named_defaults_and_from() {
    let p = ok("defaults base\n retries 9\n balance source\ndefaults\n retries 1\nbackend a from base\nbackend b\ndefaults child from base\n balance first\nbackend c from child\n");
    let r: Vec<_> = p
        .config
        .proxies
        .iter()
        .map(|p| (p.retries, p.balance.clone()))
        .collect();
    assert_eq!(
        r,
        [
            (9, Balance::Source),
            (1, Balance::RoundRobin),
            (9, Balance::First)
        ]
    );
    let e = errs("backend a from nowhere\ndefaults x from nothing\nbackend b c d\n");
    assert_eq!(
        e,
        [
            "t.cfg:1: defaults section 'nowhere' not found (for 'from')",
            "t.cfg:2: defaults section 'nothing' not found (for 'from')",
            "t.cfg:3: usage: backend NAME [from DEFAULTS]",
        ]
    );
}

#[test]
fn multi_file_spans() {
    let sources = [
        src("global.cfg", "global\n maxconn 10\ndefaults\n retries 4\n"),
        src(
            "proxies.cfg",
            "backend b\n server s 1.1.1.1:1 bogus\n\nbackend c\n frob\n",
        ),
    ];
    let Diagnostics(d) = parse_sources(&sources).unwrap_err();
    let rendered: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        rendered,
        [
            "proxies.cfg:2: unknown keyword 'bogus' in 'server' line",
            "proxies.cfg:5: unknown keyword 'frob' in 'backend' section"
        ]
    );
    // Defaults carry across files, sections do not.
    let p = parse_sources(&[
        src("a.cfg", "defaults\n retries 4\n"),
        src("b.cfg", "backend b\n"),
    ])
    .unwrap();
    assert_eq!(p.config.proxies[0].retries, 4);
    let e = parse_sources(&[
        src("a.cfg", "backend b\n"),
        src("b.cfg", " server s 1.1.1.1:1\n"),
    ])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "b.cfg:1: unknown keyword 'server' out of section"
    );
}

#[test]
fn all_errors_reported_with_warnings() {
    let Diagnostics(d) = parse_sources(&[src(
        "t.cfg",
        "global\n chroot /x\n maxconn x\nbackend b\n bogus\n balance nope\n",
    )])
    .unwrap_err();
    let sev: Vec<_> = d.iter().map(|d| (d.span.line, d.severity)).collect();
    assert_eq!(
        sev,
        [
            (2, Severity::Warning),
            (3, Severity::Error),
            (5, Severity::Error),
            (6, Severity::Error)
        ]
    );
}

#[test]
fn parse_files_unreadable() {
    let e = parse_files(&["/nonexistent/switchyard.cfg"]).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].span.line, 0);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/switchyard.cfg:0: cannot read configuration file"));
}

#[test]
fn environment_expansion_and_setenv() {
    std::env::set_var("SWITCHYARD_TEST_PORT", "6543");
    let p = ok("global\n setenv BE_HOST 10.9.8.7\n presetenv BE_HOST 1.1.1.1\n presetenv SWITCHYARD_TEST_PORT 1\nbackend b\n server s \"${BE_HOST}\":$SWITCHYARD_TEST_PORT\n server t ${UNSET_SW_VAR-10.0.0.1}:1\n");
    let s = &p.config.proxies[0].servers;
    assert_eq!(
        (s[0].host.clone(), s[0].port),
        (Host::Ip("10.9.8.7".parse().unwrap()), Some(6543))
    );
    assert_eq!(s[1].host, Host::Ip("10.0.0.1".parse().unwrap()));
    let p = ok("global\n unsetenv SWITCHYARD_TEST_PORT\n log-tag x$SWITCHYARD_TEST_PORT\n");
    assert_eq!(p.config.global.log_tag.as_deref(), Some("x"));
}

#[test]
fn crlf_and_comments() {
    let p = ok("backend b\r\n  server s1 1.1.1.1:1 check # trailing comment\r\n  # server s2 1.1.1.1:2\r\n");
    assert_eq!(p.config.proxies[0].servers.len(), 1);
    assert!(p.config.proxies[0].servers[0].check);
}

#[test]
fn stick_tables_keep_clients_on_their_server() {
    let p = ok("backend b\n stick-table type ip size 200k expire 30m nopurge\n stick on src\n server s1 1.1.1.1:1\n");
    let stick = p.config.proxies[0].stick.clone().expect("a stick table");
    assert_eq!(stick.table.size, 200 * 1024);
    assert_eq!(stick.table.expire, Some(Duration::from_secs(1800)));
    assert_eq!(stick.match_on, Some(StickSample::Src));
    assert_eq!(stick.store_request, Some(StickSample::Src));
    let w = warnings("backend b\n stick-table type ip size 1k\n server s1 1.1.1.1:1\n");
    assert!(has(&w, "t.cfg:2: warning: 'stick-table' is used only by 'stick' rules, and there are none: ignored"), "{w:?}");
    let e = errs("backend b\n stick on src\n server s1 1.1.1.1:1\n");
    assert!(
        has(
            &e,
            "t.cfg:2: 'stick' rules need a 'stick-table' in the same section"
        ),
        "{e:?}"
    );
    let e = errs("backend b\n stick on src\n stick-table type ip\n server s1 1.1.1.1:1\n");
    assert!(has(&e, "t.cfg:3: 'stick-table' needs 'size N'"), "{e:?}");
    // String tables for HTTP: a cookie, a header or a parameter, and the server's own cookie.
    let p = ok("backend b\n mode http\n stick-table type string len 64 size 10k expire 1h\n\
                stick match req.cook(SID)\n stick store-response res.cook(SID)\n server s1 1.1.1.1:1\n");
    let stick = p.config.proxies[0].stick.clone().unwrap();
    assert_eq!(
        (stick.table.kind, stick.table.key_len),
        (StickKind::String, 64)
    );
    assert_eq!(
        stick.match_on,
        Some(StickSample::RequestCookie("SID".into()))
    );
    assert_eq!(stick.store_request, None);
    assert_eq!(stick.store_response_cookie.as_deref(), Some("SID"));
    let e = errs("backend b\n stick-table type string size 1k\n stick on hdr(X-Tenant)\n stick on src\n\
                  backend c\n stick-table type ip size 1k\n stick on url_param(u)\n\
                  backend d\n mode http\n stick-table type ip size 1k\n stick on dst\n stick frob src\n");
    assert_eq!(
        e,
        [
            "t.cfg:3: this 'stick' rule reads HTTP requests: it needs 'mode http'",
            "t.cfg:4: warning: 'stick on' after the one at line 3: ignored",
            "t.cfg:7: this 'stick' rule needs a table of type string",
            "t.cfg:7: this 'stick' rule reads HTTP requests: it needs 'mode http'",
            "t.cfg:10: warning: 'stick-table' is used only by 'stick' rules, and there are none: ignored",
            "t.cfg:11: 'stick on': unsupported sample 'dst' (expected src, req.cook(NAME), req.hdr(NAME) or url_param(NAME))",
            "t.cfg:12: unknown 'stick frob' (expected on, match, store-request or store-response)",
        ],
        "{e:?}"
    );
    let w = diagnostics_of(
        "backend b\n mode http\n stick-table type string size 1k\n stick on hdr(X-Tenant)\n stick on src\n",
    );
    assert_eq!(
        w,
        ["t.cfg:5: warning: 'stick on' after the one at line 4: ignored"]
    );
}
