//! Configurations in the shape of the public HAProxy database tutorials must parse, with only
//! the expected warnings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_config::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Parsed {
    match parse_files(&[fixture(name)]) {
        Ok(p) => p,
        Err(e) => panic!("{name} failed to parse:\n{e}"),
    }
}

fn messages(p: &Parsed) -> Vec<String> {
    p.warnings
        .iter()
        .map(|w| format!("{}: {}", w.span.line, w.message))
        .collect()
}

fn inet(s: &str) -> SocketAddress {
    SocketAddress::Inet(s.parse::<SocketAddr>().unwrap())
}

#[test]
fn galera() {
    let p = load("galera.cfg");
    assert_eq!(messages(&p), Vec::<String>::new());
    let c = &p.config;
    assert_eq!(c.global.maxconn, Some(2048));
    assert!(c.global.daemon);
    assert_eq!(c.global.user.as_deref(), Some("haproxy"));
    let l = c.proxy("galera").unwrap();
    assert_eq!(l.kind, ProxyKind::Listen);
    assert_eq!(l.id, 1);
    assert_eq!(l.balance, Balance::LeastConn);
    assert_eq!(l.binds[0].addresses, [inet("0.0.0.0:3306")]);
    assert!(l.options.tcplog && l.options.dontlognull && l.options.log_global);
    assert_eq!(l.logs.len(), 1, "log global expands to the global target");
    assert_eq!(l.logs[0].max_level, Level::Notice);
    assert_eq!(l.timeouts.client, Some(Duration::from_secs(60)));
    let backups: Vec<_> = l
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.backup, s.check, s.id))
        .collect();
    assert_eq!(
        backups,
        [
            ("galera-1", false, true, 1),
            ("galera-2", true, true, 2),
            ("galera-3", true, true, 3)
        ]
    );
    assert_eq!(
        l.health_check,
        HealthCheck::Mysql {
            user: Some("haproxy".into()),
            post_41: true
        }
    );
    assert!(!l.log_health_checks);
}

#[test]
fn cockroachdb() {
    let p = load("cockroachdb.cfg");
    assert_eq!(messages(&p), Vec::<String>::new());
    let psql = p.config.proxy("psql").unwrap();
    assert!(psql.options.clitcpka, "inherited from defaults");
    assert_eq!(psql.timeouts.server, Some(Duration::from_secs(600)));
    assert_eq!(psql.servers.len(), 3);
    let s = &psql.servers[0];
    assert_eq!(s.host, Host::Name("crdb-1.internal".into()));
    assert_eq!(
        (s.port, s.check_port, s.check),
        (Some(26257), Some(8080), true)
    );
    // `option httpchk METHOD URI`: the readiness endpoint on each node's HTTP port.
    assert_eq!(
        psql.health_check,
        HealthCheck::Http(HttpCheck {
            method: "GET".into(),
            uri: "/health?ready=1".into(),
            ..HttpCheck::default()
        })
    );
    assert!(psql.servers.iter().all(|s| s.check_port == Some(8080)));
    let ui = p.config.proxy("crdb-ui").unwrap();
    assert_eq!(ui.health_check, HealthCheck::Tcp);
    assert_eq!(ui.binds[0].addresses, [inet("0.0.0.0:8080")]);
    assert_eq!((psql.id, ui.id), (1, 2));
}

#[test]
fn dolphindb() {
    let p = load("dolphindb.cfg");
    assert_eq!(messages(&p), Vec::<String>::new());
    let c = &p.config;
    assert_eq!(c.global.nbthread, Some(2));
    assert_eq!(
        c.global.logs[0].address,
        LogAddress::Unix("/dev/log".into())
    );
    let fe = c.proxy("dolphindb_fe").unwrap();
    assert_eq!(fe.maxconn, Some(5000));
    assert_eq!(fe.default_backend.as_deref(), Some("dolphindb_nodes"));
    let be = c.proxy("dolphindb_nodes").unwrap();
    assert_eq!((fe.id, be.id), (1, 2));
    assert_eq!(be.retries, 2);
    assert_eq!(be.options.redispatch, Some(-1));
    assert_eq!(be.timeouts.check, Some(Duration::from_secs(2)));
    for s in &be.servers {
        assert_eq!(
            (s.inter, s.fall, s.rise),
            (Duration::from_secs(3), 3, 2),
            "default-server applies"
        );
    }
    assert_eq!(be.servers[3].maxconn, Some(500));
    assert_eq!(be.maxconn, None, "maxconn is a frontend setting");
}

#[test]
fn postgres_primary_standby() {
    let p = load("postgres.cfg");
    assert_eq!(
        messages(&p),
        ["21: conditions are not implemented yet; rule ignored"]
    );
    let c = &p.config;
    assert_eq!(c.global.logs[0].address, LogAddress::Stdout);
    assert_eq!(c.global.logs[0].format, LogFormat::Raw);
    let sock = &c.global.stats_sockets[0];
    assert_eq!(
        sock.address,
        SocketAddress::Unix("/var/run/haproxy/admin.sock".into())
    );
    assert_eq!(
        (sock.mode, sock.level.as_deref()),
        (Some(0o660), Some("admin"))
    );
    assert_eq!(c.global.hard_stop_after, Some(Duration::from_secs(30)));
    let fe = c.proxy("pg_frontend").unwrap();
    assert_eq!(fe.binds.len(), 2);
    assert_eq!(fe.binds[1].name.as_deref(), Some("replicas"));
    assert!(fe.use_backends.is_empty());
    let primary = c.proxy("pg_primary").unwrap();
    assert!(primary.servers[1].backup);
    let pgsql = HealthCheck::Pgsql {
        user: "haproxy".into(),
    };
    assert_eq!(primary.health_check, pgsql);
    assert_eq!(c.proxy("pg_replicas").unwrap().health_check, pgsql);
    assert_eq!(fe.health_check, HealthCheck::Tcp, "a frontend has no check");
    assert_eq!(primary.timeouts.check, Some(Duration::from_secs(5)));
    // With a stats socket, HAProxy's internal CLI proxy holds id 1.
    assert_eq!(
        c.proxies.iter().map(|p| p.id).collect::<Vec<_>>(),
        [2, 3, 4]
    );
}

#[test]
fn runtime_api_empty_backend() {
    let p = load("runtime_api.cfg");
    let messages = messages(&p);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[0],
        "4: 'stats timeout' is not implemented yet, ignored"
    );
    // An admin socket on every address is valid, as in HAProxy, but named at `-c` time.
    assert!(
        messages[1].starts_with("3: 'stats socket' on 0.0.0.0:9999 with 'level admin'"),
        "{messages:?}"
    );
    let c = &p.config;
    let sock = &c.global.stats_sockets[0];
    assert_eq!(sock.address, inet("0.0.0.0:9999"));
    assert_eq!(sock.level.as_deref(), Some("admin"));
    let be = c.proxy("be_dynamic").unwrap();
    assert!(be.servers.is_empty());
    assert_eq!(be.balance, Balance::RoundRobin);
    // With a stats socket, HAProxy's internal CLI proxy holds id 1.
    assert_eq!(be.id, 2);
    let fe = c.proxy("fe").unwrap();
    assert_eq!(fe.id, 3);
    assert_eq!(fe.default_backend.as_deref(), Some("be_dynamic"));
}

#[test]
fn all_fixtures_together() {
    // Several files form one configuration; names collide across them (galera and the
    // others are independent), so only combine files with distinct proxy names.
    let p = parse_files(&[fixture("galera.cfg"), fixture("dolphindb.cfg")]).unwrap();
    assert_eq!(p.config.proxies.len(), 3);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        p.config.proxies[0].span.file.as_ref(),
        fixture("galera.cfg").display().to_string()
    );
}

#[test]
fn patroni_rest_api_checks() {
    let p = load("patroni.cfg");
    assert_eq!(messages(&p), Vec::<String>::new());
    let primary = p.config.proxy("primary").unwrap();
    assert!(primary.log_health_checks, "inherited from defaults");
    assert_eq!(
        primary.health_check,
        HealthCheck::Http(HttpCheck {
            method: "OPTIONS".into(),
            uri: "/primary".into(),
            expect: Some(HttpExpect {
                negate: false,
                matcher: HttpMatch::Status(vec![(200, 200)]),
            }),
            ..HttpCheck::default()
        })
    );
    for s in &primary.servers {
        assert_eq!(
            (s.check, s.check_port, s.shutdown_sessions_on_down, s.inter),
            (true, Some(8008), true, Duration::from_secs(3))
        );
    }
    // HAProxy's legacy form: headers embedded in the version after an escaped CRLF.
    let replicas = p.config.proxy("replicas").unwrap();
    assert_eq!(
        replicas.health_check,
        HealthCheck::Http(HttpCheck {
            method: "GET".into(),
            uri: "/replica?lag=10MB".into(),
            version: "HTTP/1.1".into(),
            headers: vec![("Host".into(), "patroni".into())],
            body: None,
            expect: Some(HttpExpect {
                negate: false,
                matcher: HttpMatch::Status(vec![(200, 299)]),
            }),
        })
    );
}

#[test]
fn database_role_checks() {
    let p = load("dbcheck.cfg");
    assert_eq!(messages(&p), Vec::<String>::new());
    let c = &p.config;
    let db = |name: &str| match &c.proxy(name).unwrap().health_check {
        HealthCheck::Database(d) => d.clone(),
        other => panic!("{name}: expected a db-check, got {other:?}"),
    };
    let w = db("pg-write");
    assert_eq!(
        (w.engine, w.user.as_str(), w.role, w.max_lag, w.database),
        (
            DatabaseEngine::Postgres,
            "monitor",
            DatabaseRole::Primary,
            None,
            None
        )
    );
    assert_eq!(
        w.password,
        Some(Secret::File("/etc/switchyard/pg.pass".into()))
    );
    let r = db("pg-read");
    assert_eq!(
        (r.role, r.max_lag, r.password),
        (
            DatabaseRole::Standby,
            Some(Duration::from_secs(10)),
            Some(Secret::Env("PGCHECK_PASSWORD".into()))
        )
    );
    let any = db("pg-any");
    assert_eq!(
        (any.role, any.database.as_deref()),
        (DatabaseRole::Any, Some("postgres")),
        "the defaults' db-check applies"
    );
    let g = db("galera");
    assert_eq!((g.engine, g.allow_donor), (DatabaseEngine::Galera, true));
    assert_eq!(
        c.proxy("mysql-replicas").unwrap().health_check,
        HealthCheck::Mysql {
            user: Some("haproxy".into()),
            post_41: true
        }
    );
}
