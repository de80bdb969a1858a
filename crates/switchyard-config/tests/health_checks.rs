//! Health-check keywords: `option httpchk`/`mysql-check`/`pgsql-check`/`tcp-check`, `http-check`,
//! `tcp-check`, `option log-health-checks`, `db-check`, with `defaults` inheritance and
//! diagnostics pointing at `file:line`.

use std::time::Duration;

use switchyard_config::*;

fn parse(text: &str) -> Result<Parsed, Diagnostics> {
    parse_sources(&[Source {
        name: "t.cfg".into(),
        text: text.into(),
    }])
}

fn ok(text: &str) -> Parsed {
    match parse(text) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Rendered diagnostics of a configuration that must fail.
fn errs(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(p) => panic!("expected errors, got config with warnings {:?}", p.warnings),
        Err(Diagnostics(d)) => d.iter().map(|d| d.to_string()).collect(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.iter().map(|d| d.to_string()).collect()
}

/// The check of the only (or first) proxy of a configuration that must parse.
fn check(text: &str) -> HealthCheck {
    ok(text).config.proxies[0].health_check.clone()
}

fn http(text: &str) -> HttpCheck {
    match check(text) {
        HealthCheck::Http(h) => h,
        other => panic!("expected an HTTP check, got {other:?}"),
    }
}

fn tcp_rules(text: &str) -> Vec<TcpCheckRule> {
    match check(text) {
        HealthCheck::TcpCheck(r) => r,
        other => panic!("expected tcp-check rules, got {other:?}"),
    }
}

fn db(text: &str) -> DatabaseCheck {
    match check(text) {
        HealthCheck::Database(d) => d,
        other => panic!("expected a db-check, got {other:?}"),
    }
}

fn status(ranges: &[(u16, u16)]) -> Option<HttpExpect> {
    Some(HttpExpect {
        negate: false,
        matcher: HttpMatch::Status(ranges.to_vec()),
    })
}

const SRV: &str = " server s1 10.0.0.1:5432 check\n";

#[test]
fn default_is_tcp_connect() {
    let p = ok(&format!("backend b\n{SRV}"));
    assert_eq!(p.config.proxies[0].health_check, HealthCheck::Tcp);
    assert!(!p.config.proxies[0].log_health_checks);
    assert!(p.warnings.is_empty());
}

#[test]
fn option_httpchk_forms() {
    assert_eq!(http("backend b\n option httpchk\n"), HttpCheck::default());
    let h = http("backend b\n option httpchk /health\n");
    assert_eq!((h.method.as_str(), h.uri.as_str()), ("OPTIONS", "/health"));
    let h = http("backend b\n option httpchk GET /health?ready=1\n");
    assert_eq!(
        (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
        ("GET", "/health?ready=1", "HTTP/1.0")
    );
    let h = http("backend b\n option httpchk HEAD / HTTP/1.1\n");
    assert_eq!((h.version.as_str(), h.headers.len()), ("HTTP/1.1", 0));
}

#[test]
fn option_httpchk_legacy_headers_in_version() {
    // Escapes decoded by the lexer (unquoted and double quotes)...
    let h = http("backend b\n option httpchk GET /ping HTTP/1.1\\r\\nHost:\\ db.example.com\\r\\nX-Check:\\ 1\n");
    assert_eq!(h.version, "HTTP/1.1");
    assert_eq!(
        h.headers,
        [
            ("Host".to_string(), "db.example.com".to_string()),
            ("X-Check".to_string(), "1".to_string())
        ]
    );
    let h = http("backend b\n option httpchk GET /ping \"HTTP/1.1\\r\\nHost: a\"\n");
    assert_eq!(h.headers, [("Host".to_string(), "a".to_string())]);
    // ...and still written out in single quotes.
    let h = http("backend b\n option httpchk GET /ping 'HTTP/1.1\\r\\nHost: b'\n");
    assert_eq!(
        (h.version.as_str(), h.headers.clone()),
        ("HTTP/1.1", vec![("Host".to_string(), "b".to_string())])
    );
}

#[test]
fn option_httpchk_errors() {
    assert_eq!(
        errs("backend b\n option httpchk GET / HTTP/1.1\\r\\nHost: x\n"),
        ["t.cfg:2: 'option httpchk': too many arguments (expected [METHOD] URI [VERSION]; escape spaces in embedded headers with '\\ ')"]
    );
    assert_eq!(
        errs("backend b\n option httpchk GET / HTTP/1.1\\r\\nnot-a-header\n"),
        ["t.cfg:2: 'option httpchk': invalid header 'not-a-header' after the version (expected 'NAME: VALUE')"]
    );
    assert_eq!(
        errs("backend b\n no option httpchk\n"),
        ["t.cfg:2: negation is not supported for 'option httpchk'"]
    );
}

#[test]
fn http_check_send_merges_into_option_httpchk() {
    // `http-check send` after the option: its fields override.
    let h = http("backend b\n option httpchk GET /old\n http-check send meth HEAD uri /new ver HTTP/1.1 hdr Host db1 hdr Accept */* body \"{}\"\n");
    assert_eq!(
        h,
        HttpCheck {
            method: "HEAD".into(),
            uri: "/new".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), "db1".into()),
                ("Accept".into(), "*/*".into())
            ],
            body: Some("{}".into()),
            expect: None,
        }
    );
    // Before the option, and partial: only the given fields override.
    let h = http("backend b\n http-check send hdr Host db1 comment \"probe\"\n option httpchk GET /x HTTP/1.1\n");
    assert_eq!(
        (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
        ("GET", "/x", "HTTP/1.1")
    );
    assert_eq!(h.headers, [("Host".to_string(), "db1".to_string())]);
    // Explicit headers replace the legacy embedded ones, as in HAProxy.
    let h = http("backend b\n option httpchk GET / HTTP/1.1\\r\\nHost:\\ old\n http-check send hdr Host new\n");
    assert_eq!(h.headers, [("Host".to_string(), "new".to_string())]);
}

#[test]
fn http_check_expect_forms() {
    let e = |rule: &str| {
        http(&format!(
            "backend b\n option httpchk\n http-check expect {rule}\n"
        ))
        .expect
    };
    assert_eq!(e("status 200"), status(&[(200, 200)]));
    assert_eq!(e("status 200-399"), status(&[(200, 399)]));
    assert_eq!(
        e("status 200,301-302,404"),
        status(&[(200, 200), (301, 302), (404, 404)])
    );
    assert_eq!(
        e("! status 503"),
        Some(HttpExpect {
            negate: true,
            matcher: HttpMatch::Status(vec![(503, 503)])
        })
    );
    assert_eq!(
        e("rstatus ^2[0-9]{2}$"),
        Some(HttpExpect {
            negate: false,
            matcher: HttpMatch::RStatus("^2[0-9]{2}$".into())
        })
    );
    assert_eq!(
        e("string \"role: primary\""),
        Some(HttpExpect {
            negate: false,
            matcher: HttpMatch::String("role: primary".into())
        })
    );
    assert_eq!(
        e("comment \"is leader\" ! rstring \"\\\"state\\\":\\s*\\\"(stopped|starting)\\\"\""),
        Some(HttpExpect {
            negate: true,
            matcher: HttpMatch::RString(r#""state":\s*"(stopped|starting)""#.into())
        })
    );
}

#[test]
fn http_check_errors_name_the_line() {
    let e = errs("backend b\n option httpchk\n http-check expect rstring (unclosed\n http-check expect status 2000\n http-check expect status 300-200\n http-check expect header x\n http-check expect status\n http-check send-state-not\n http-check set-var(check.x) str(1)\n http-check send uri-lf /%[src]\n http-check send meth\n");
    assert_eq!(
        e,
        [
            "t.cfg:3: 'http-check expect rstring': invalid regular expression '(unclosed': unclosed group (Rust regex syntax: no look-around or backreferences)",
            "t.cfg:4: 'http-check expect status': invalid status code '2000' (expected 100-599)",
            "t.cfg:5: 'http-check expect status': invalid status range '300-200' (low > high)",
            "t.cfg:6: 'http-check expect': unknown match 'header' (expected status, rstatus, string or rstring)",
            "t.cfg:7: 'http-check expect status' expects a pattern",
            "t.cfg:8: 'http-check send-state-not' is not supported (expected send, expect, connect, disable-on-404 or comment)",
            "t.cfg:9: 'http-check set-var(check.x)' is not supported (expected send, expect, connect, disable-on-404 or comment)",
            "t.cfg:10: 'http-check send': 'uri-lf' (log-format) is not implemented yet; use the plain form",
            "t.cfg:11: 'http-check send': 'meth' expects an argument",
        ]
    );
    assert_eq!(
        errs("backend b\n option httpchk\n http-check expect status 200\n http-check expect string ok\n"),
        ["t.cfg:4: only one 'http-check expect' rule per proxy is supported"]
    );
    assert_eq!(
        errs("backend b\n option httpchk\n http-check expect rstatus (?=2)\n"),
        ["t.cfg:3: 'http-check expect rstatus': invalid regular expression '(?=2)': look-around, including look-ahead and look-behind, is not supported (Rust regex syntax: no look-around or backreferences)"]
    );
}

#[test]
fn http_check_unimplemented_rules_warn() {
    let p = ok("backend b\n option httpchk GET /\n http-check disable-on-404\n http-check connect\n http-check comment hello\n http-check expect status 200\n");
    let w: Vec<String> = p.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        [
            "t.cfg:3: warning: 'http-check disable-on-404' is not implemented yet, ignored",
            "t.cfg:4: warning: 'http-check connect' is not implemented yet, ignored",
        ]
    );
    assert_eq!(
        match &p.config.proxies[0].health_check {
            HealthCheck::Http(h) => h.expect.clone(),
            _ => None,
        },
        status(&[(200, 200)])
    );
}

#[test]
fn http_check_rules_without_option_httpchk_warn() {
    let p = ok("backend b\n http-check expect status 200\n option tcp-check\n");
    assert_eq!(
        p.config.proxies[0].health_check,
        HealthCheck::TcpCheck(vec![])
    );
    assert_eq!(
        p.warnings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["t.cfg:2: warning: backend 'b' uses http-check rules without 'option httpchk', so the rules are ignored"]
    );
}

#[test]
fn mysql_and_pgsql_checks() {
    assert_eq!(
        check("backend b\n option mysql-check\n"),
        HealthCheck::Mysql {
            user: None,
            post_41: true
        }
    );
    assert_eq!(
        // post-41 is HAProxy 2.x's default.
        check("backend b\n option mysql-check user haproxy\n"),
        HealthCheck::Mysql {
            user: Some("haproxy".into()),
            post_41: true
        }
    );
    assert_eq!(
        check("backend b\n option mysql-check user haproxy post-41\n"),
        HealthCheck::Mysql {
            user: Some("haproxy".into()),
            post_41: true
        }
    );
    assert_eq!(
        check("backend b\n option mysql-check user haproxy pre-41\n"),
        HealthCheck::Mysql {
            user: Some("haproxy".into()),
            post_41: false
        }
    );
    assert_eq!(
        check("backend b\n option pgsql-check user monitor\n"),
        HealthCheck::Pgsql {
            user: "monitor".into()
        }
    );
    assert_eq!(
        errs("backend b\n option pgsql-check\n option pgsql-check user\n option pgsql-check login x\n option mysql-check user\n option mysql-check user x post-51\n option mysql-check login x\n"),
        [
            "t.cfg:2: 'option pgsql-check' expects 'user <username>' (the user is mandatory)",
            "t.cfg:3: 'option pgsql-check' expects 'user <username>' (the user is mandatory)",
            "t.cfg:4: 'option pgsql-check': unknown argument 'login' (expected 'user <username>')",
            "t.cfg:5: 'option mysql-check': 'user' expects a username",
            "t.cfg:6: 'option mysql-check': unexpected argument 'post-51' (expected post-41 or pre-41)",
            "t.cfg:7: 'option mysql-check': unknown argument 'login' (expected 'user <username> [post-41|pre-41]')",
        ]
    );
}

#[test]
fn tcp_check_rules_in_order_before_or_after_the_option() {
    let text = "backend b\n tcp-check connect port 6379 send-proxy ssl\n tcp-check send PING\\r\\n\n option tcp-check\n tcp-check expect string +PONG\n tcp-check comment role check\n tcp-check send \"info replication\\r\\n\" comment ask\n tcp-check expect min-recv 10 ! rstring role:slave\n tcp-check send-binary 0a0B00ff\n tcp-check expect binary 0a0b\n tcp-check expect rbinary ^0A(00)+\n tcp-check connect\n";
    let rules = tcp_rules(text);
    assert_eq!(
        rules,
        [
            TcpCheckRule::Connect {
                port: Some(6379),
                send_proxy: true,
                ssl: true
            },
            TcpCheckRule::Send(b"PING\r\n".to_vec()),
            TcpCheckRule::Expect(TcpExpect {
                negate: false,
                matcher: TcpMatch::String("+PONG".into()),
                min_recv: None
            }),
            TcpCheckRule::Comment("role check".into()),
            TcpCheckRule::Send(b"info replication\r\n".to_vec()),
            TcpCheckRule::Expect(TcpExpect {
                negate: true,
                matcher: TcpMatch::RString("role:slave".into()),
                min_recv: Some(10)
            }),
            TcpCheckRule::Send(vec![0x0a, 0x0b, 0x00, 0xff]),
            TcpCheckRule::Expect(TcpExpect {
                negate: false,
                matcher: TcpMatch::Binary(vec![0x0a, 0x0b]),
                min_recv: None
            }),
            TcpCheckRule::Expect(TcpExpect {
                negate: false,
                matcher: TcpMatch::RBinary("^0A(00)+".into()),
                min_recv: None
            }),
            TcpCheckRule::Connect {
                port: None,
                send_proxy: false,
                ssl: false
            },
        ]
    );
    assert!(ok(text).warnings.is_empty());
    // `option tcp-check` alone: a connect-only check.
    assert_eq!(
        check("backend b\n option tcp-check\n"),
        HealthCheck::TcpCheck(vec![])
    );
}

#[test]
fn tcp_check_send_decodes_escapes() {
    let rules = tcp_rules("backend b\n option tcp-check\n tcp-check send \\x00\\x01\\xff\\t\\\\end\\n\n tcp-check send \"a\\x80b\\r\"\n");
    assert_eq!(
        rules,
        [
            TcpCheckRule::Send(vec![0, 1, 0xff, b'\t', b'\\', b'e', b'n', b'd', b'\n']),
            TcpCheckRule::Send(vec![b'a', 0x80, b'b', b'\r']),
        ]
    );
}

#[test]
fn tcp_check_errors_name_the_line() {
    let e = errs("backend b\n option tcp-check\n tcp-check send-binary abc\n tcp-check send-binary zz\n tcp-check send\n tcp-check send two words\n tcp-check expect\n tcp-check expect string\n tcp-check expect rstring a(\n tcp-check expect binary 0g\n tcp-check expect min-recv x string a\n tcp-check connect port 0\n tcp-check connect addr 1.2.3.4\n tcp-check send-lf %[src]\n tcp-check frobnicate\n tcp-check\n tcp-check expect custom x\n");
    assert_eq!(
        e,
        [
            "t.cfg:3: 'tcp-check send-binary': 'abc' has an odd number of hexadecimal digits",
            "t.cfg:4: 'tcp-check send-binary': 'zz' is not hexadecimal (bad character 'z')",
            "t.cfg:5: 'tcp-check send' expects a string",
            "t.cfg:6: 'tcp-check send': unexpected argument 'words' (quote the string or escape spaces)",
            "t.cfg:7: 'tcp-check expect' expects [!] string|binary|rstring|rbinary <pattern>",
            "t.cfg:8: 'tcp-check expect string' expects a pattern",
            "t.cfg:9: 'tcp-check expect rstring': invalid regular expression 'a(': unclosed group (Rust regex syntax: no look-around or backreferences)",
            "t.cfg:10: 'tcp-check expect binary': '0g' is not hexadecimal (bad character 'g')",
            "t.cfg:11: 'tcp-check expect min-recv': 'x' is not a valid number",
            "t.cfg:12: 'tcp-check connect': port '0' out of range (1-65535)",
            "t.cfg:13: 'tcp-check connect': 'addr' is not implemented yet",
            "t.cfg:14: 'tcp-check send-lf' is not implemented yet",
            "t.cfg:15: unknown rule 'tcp-check frobnicate' (expected connect, send, send-binary, expect or comment)",
            "t.cfg:16: 'tcp-check' expects a rule (connect, send, send-binary, expect, comment)",
            "t.cfg:17: 'tcp-check expect custom' is not implemented yet",
        ]
    );
}

#[test]
fn tcp_check_rules_without_option_warn() {
    let p = ok("backend b\n tcp-check send PING\\r\\n\n tcp-check expect string +PONG\n server s 1.1.1.1:6379 check\n");
    assert_eq!(p.config.proxies[0].health_check, HealthCheck::Tcp);
    assert_eq!(
        p.warnings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["t.cfg:2: warning: backend 'b' uses tcp-check rules without 'option tcp-check'; they are ignored until 'option tcp-check' is set"]
    );
}

#[test]
fn log_health_checks() {
    let p = ok(
        "defaults\n option log-health-checks\nbackend a\nbackend b\n no option log-health-checks\n",
    );
    let flags: Vec<bool> = p
        .config
        .proxies
        .iter()
        .map(|p| p.log_health_checks)
        .collect();
    assert_eq!(flags, [true, false]);
    assert!(p.warnings.is_empty());
    assert_eq!(
        errs("backend b\n option log-health-checks now\n"),
        ["t.cfg:2: 'option log-health-checks': unexpected argument 'now'"]
    );
}

#[test]
fn unimplemented_check_kinds_fall_back_to_tcp_connect() {
    for opt in [
        "ldap-check",
        "smtpchk",
        "smtpchk EHLO example.com",
        "redis-check",
        "ssl-hello-chk",
        "external-check",
        "spop-check",
    ] {
        let text = format!("backend b\n option httpchk\n option {opt}\n");
        let p = ok(&text);
        assert_eq!(p.config.proxies[0].health_check, HealthCheck::Tcp, "{opt}");
        let name = opt.split(' ').next().unwrap();
        assert_eq!(
            p.warnings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            [
                format!("t.cfg:3: warning: 'option {name}' is not implemented yet; the health check of this proxy will be a plain TCP connect"),
                format!("t.cfg:3: warning: 'option {name}' replaces the health check 'option httpchk' set at t.cfg:2; only the last one is used"),
            ]
        );
    }
}

#[test]
fn later_check_kind_replaces_earlier() {
    let p = ok("backend b\n option httpchk GET /\n option mysql-check user x\n");
    assert_eq!(
        p.config.proxies[0].health_check,
        HealthCheck::Mysql {
            user: Some("x".into()),
            post_41: true
        }
    );
    assert_eq!(
        p.warnings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["t.cfg:3: warning: 'option mysql-check' replaces the health check 'option httpchk' set at t.cfg:2; only the last one is used"]
    );
    // db-check replaces option httpchk and the other way round.
    assert!(matches!(
        check("backend b\n option httpchk\n db-check postgres user u\n"),
        HealthCheck::Database(_)
    ));
    assert!(matches!(
        check("backend b\n db-check postgres user u\n option httpchk\n"),
        HealthCheck::Http(_)
    ));
    // The same kind twice: the last one, silently.
    assert_eq!(
        http("backend b\n option httpchk GET /a\n option httpchk GET /b\n").uri,
        "/b"
    );
    assert!(warnings("backend b\n option httpchk GET /a\n option httpchk GET /b\n").is_empty());
}

#[test]
fn defaults_inheritance() {
    let p = ok("defaults\n option httpchk GET /health\n http-check expect status 200\n timeout check 3s\nbackend inherits\nbackend own_expect\n http-check expect status 200-299\nbackend other_kind\n option pgsql-check user pg\nfrontend fe\n bind :1\n default_backend inherits\n");
    let c = &p.config;
    let h = |name: &str| match &c.proxy(name).unwrap().health_check {
        HealthCheck::Http(h) => h.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        (h("inherits").uri.as_str(), h("inherits").expect),
        ("/health", status(&[(200, 200)]))
    );
    assert_eq!(
        c.proxy("inherits").unwrap().timeouts.check,
        Some(Duration::from_secs(3))
    );
    // A proxy's own http-check rules replace the inherited ones, the option stays.
    assert_eq!(
        (h("own_expect").uri.as_str(), h("own_expect").expect),
        ("/health", status(&[(200, 299)]))
    );
    assert_eq!(
        c.proxy("other_kind").unwrap().health_check,
        HealthCheck::Pgsql { user: "pg".into() }
    );
    // The inherited http-check rules are simply unused there (no option httpchk): warned.
    assert_eq!(
        p.warnings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["t.cfg:3: warning: backend 'other_kind' uses http-check rules without 'option httpchk', so the rules are ignored"]
    );
    assert_eq!(c.proxy("fe").unwrap().health_check, HealthCheck::Tcp);
}

#[test]
fn defaults_tcp_check_rules_are_inherited_as_a_set() {
    let p = ok("defaults\n tcp-check send PING\\r\\n\n tcp-check expect string +PONG\nbackend uses_defaults\n option tcp-check\nbackend own_rules\n option tcp-check\n tcp-check send QUIT\\r\\n\ndefaults\nbackend fresh\n option tcp-check\n");
    let c = &p.config;
    let rules = |name: &str| match &c.proxy(name).unwrap().health_check {
        HealthCheck::TcpCheck(r) => r.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(rules("uses_defaults").len(), 2);
    assert_eq!(
        rules("own_rules"),
        [TcpCheckRule::Send(b"QUIT\r\n".to_vec())]
    );
    assert!(
        rules("fresh").is_empty(),
        "a new defaults section starts over"
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Named defaults carry their check into `from`.
    let p = ok("defaults pg\n db-check postgres user mon role standby\nbackend b from pg\n");
    assert!(matches!(
        &p.config.proxies[0].health_check,
        HealthCheck::Database(d) if d.role == DatabaseRole::Standby
    ));
}

#[test]
fn checks_in_a_frontend_warn() {
    let w = warnings("frontend fe\n bind :1\n option httpchk\n http-check expect status 200\n tcp-check connect\n db-check postgres user u\n option log-health-checks\n default_backend be\nbackend be\n");
    assert_eq!(
        w,
        [
            "t.cfg:3: warning: 'option httpchk' ignored because frontend 'fe' has no backend capability",
            "t.cfg:4: warning: 'http-check expect' ignored because frontend 'fe' has no backend capability",
            "t.cfg:5: warning: 'tcp-check connect' ignored because frontend 'fe' has no backend capability",
            "t.cfg:6: warning: 'db-check' ignored because frontend 'fe' has no backend capability",
            "t.cfg:7: warning: 'option log-health-checks' ignored because frontend 'fe' has no backend capability",
        ]
    );
}

#[test]
fn db_check_forms() {
    let d = db("backend b\n db-check postgres user monitor\n");
    assert_eq!(
        d,
        DatabaseCheck {
            engine: DatabaseEngine::Postgres,
            user: "monitor".into(),
            password: None,
            database: None,
            role: DatabaseRole::Any,
            max_lag: None,
            allow_donor: false,
        }
    );
    let d = db("backend b\n db-check mysql user mon password-file /run/secrets/mon dbname mysql role standby max-lag 30s\n");
    assert_eq!(
        (
            d.engine,
            d.password,
            d.database.as_deref(),
            d.role,
            d.max_lag
        ),
        (
            DatabaseEngine::Mysql,
            Some(Secret::File("/run/secrets/mon".into())),
            Some("mysql"),
            DatabaseRole::Standby,
            Some(Duration::from_secs(30))
        )
    );
    let d = db("backend b\n db-check galera user mon password-env GALERA_PW allow-donor\n");
    assert_eq!(
        (d.engine, d.password, d.allow_donor, d.role),
        (
            DatabaseEngine::Galera,
            Some(Secret::Env("GALERA_PW".into())),
            true,
            DatabaseRole::Any
        )
    );
    let d = db("backend b\n db-check postgres user mon role primary\n");
    assert_eq!(d.role, DatabaseRole::Primary);
}

#[test]
fn db_check_errors_and_warnings() {
    let e = errs("backend b\n db-check postgres\n db-check galera user u role primary\n db-check postgres user u allow-donor\n db-check oracle user u\n db-check\n db-check mysql user u role leader\n db-check mysql user u max-lag soon\n db-check mysql user u password-env A password-file B\n db-check mysql user u bogus\n db-check mysql user\n");
    assert_eq!(
        e,
        [
            "t.cfg:2: 'db-check': 'user NAME' is mandatory",
            "t.cfg:3: 'db-check galera': 'role' does not apply, a Galera node is judged by its sync state (wsrep_local_state); use 'allow-donor' to accept Donor/Desynced nodes",
            "t.cfg:4: 'db-check': 'allow-donor' only applies to 'db-check galera'",
            "t.cfg:5: 'db-check': unknown database 'oracle' (expected postgres, mysql or galera)",
            "t.cfg:6: 'db-check' expects a database kind; usage: db-check postgres|mysql|galera user NAME [password PASS|password-file PATH|password-env VAR] [dbname NAME] [role primary|standby|any] [max-lag DURATION] [allow-donor]",
            "t.cfg:7: 'db-check': unknown role 'leader' (expected primary, standby or any)",
            "t.cfg:8: 'db-check max-lag': 'soon': expected a number",
            "t.cfg:9: 'db-check': give only one of password, password-file and password-env",
            "t.cfg:10: 'db-check': unknown argument 'bogus'; usage: db-check postgres|mysql|galera user NAME [password PASS|password-file PATH|password-env VAR] [dbname NAME] [role primary|standby|any] [max-lag DURATION] [allow-donor]",
            "t.cfg:11: 'db-check': 'user' expects a value",
            "t.cfg:11: 'db-check': 'user NAME' is mandatory",
        ]
    );
    let w = warnings("backend b\n db-check postgres user u role primary max-lag 5s\n");
    assert_eq!(
        w,
        ["t.cfg:2: warning: 'db-check': 'max-lag' is ignored with 'role primary' (a primary has no replication lag)"]
    );
}

#[test]
fn db_check_inline_password_is_never_shown() {
    const PW: &str = "hunter2-S3cret";
    let text = format!("backend b\n db-check postgres user u password {PW} dbname app\n server s 1.1.1.1:5432 check\n");
    let p = ok(&text);
    let d = match &p.config.proxies[0].health_check {
        HealthCheck::Database(d) => d.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(d.password.as_ref().unwrap().resolve().unwrap(), PW);
    let w: Vec<String> = p.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        ["t.cfg:2: warning: 'db-check': password written in the configuration; prefer password-file PATH or password-env VAR"]
    );
    for shown in [
        format!("{p:?}"),
        format!("{:?}", p.config),
        format!("{d:?}"),
        format!("{:?}", p.config.proxies[0]),
        w.join("\n"),
    ] {
        assert!(!shown.contains(PW), "secret leaked: {shown}");
    }
    assert!(format!("{d:?}").contains("<redacted>"));
    // Nor in the diagnostics of a configuration that fails on the same line.
    let text = format!("backend b\n db-check galera user u password {PW} role primary\n db-check mysql password {PW}\n db-check mysql user u password {PW} password-env X\n");
    let e = match parse(&text) {
        Ok(_) => panic!("must fail"),
        Err(e) => e,
    };
    let shown = format!("{e}\n{e:?}");
    assert!(!shown.contains(PW), "secret leaked: {shown}");
    assert_eq!(
        e.0.iter().filter(|d| d.severity == Severity::Error).count(),
        3
    );
    // A mistyped keyword: neither it (it may be the secret) nor what follows is echoed.
    for typo in [
        format!("pass {PW}"),
        format!("passwd {PW}"),
        format!("password={PW}"),
        PW.to_string(),
    ] {
        let e = errs(&format!(
            "backend b\n db-check postgres user u {typo} dbname x\n"
        ));
        let shown = e.join("\n");
        assert!(!shown.contains(PW), "secret leaked: {shown}");
        assert!(
            shown.starts_with("t.cfg:2: 'db-check': unknown argument #3 (not shown)"),
            "{shown}"
        );
    }
    assert!(errs("backend b\n db-check postgres user u dbnmae x\n")[0]
        .starts_with("t.cfg:2: 'db-check': unknown argument 'dbnmae'; usage:"));
}

#[test]
fn server_check_settings() {
    let p = ok("defaults\n timeout check 4s\nbackend b\n default-server on-error sudden-death error-limit 3 observe layer4\n server s1 10.0.0.1:5432 check agent-check agent-port 5555 agent-send \"status\\n\" agent-addr 10.0.0.100 agent-inter 2s on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n server s2 10.0.0.2:5432 check on-error fail-check\n server s3 10.0.0.3:5432 on-error fastinter\n");
    let b = &p.config.proxies[0];
    assert_eq!(b.timeouts.check, Some(Duration::from_secs(4)));
    let s = &b.servers;
    assert_eq!(
        (
            s[0].on_error,
            s[0].error_limit,
            s[0].observe_layer4,
            s[0].shutdown_sessions_on_down,
            s[0].shutdown_backup_sessions_on_up
        ),
        (OnError::SuddenDeath, Some(3), true, true, true)
    );
    assert_eq!(
        (
            s[0].agent_send.as_deref(),
            s[0].agent_addr.clone(),
            s[0].agent_port
        ),
        (
            Some("status\n"),
            Some(Host::Ip("10.0.0.100".parse().unwrap())),
            Some(5555)
        )
    );
    assert_eq!(
        (
            s[1].on_error,
            s[1].shutdown_sessions_on_down,
            s[1].agent_send.clone()
        ),
        (OnError::FailCheck, false, None)
    );
    assert_eq!(s[2].on_error, OnError::FastInter);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let e = errs("backend b\n server s1 1.1.1.1:1 agent-addr bad!host\n server s2 1.1.1.1:1 agent-send\n server s3 1.1.1.1:1 on-marked-down kill\n server s4 1.1.1.1:1 error-limit 0\n");
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with("t.cfg:2: server setting 'agent-addr': "),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        "t.cfg:3: server setting 'agent-send' expects an argument"
    );
    assert_eq!(
        e[2],
        "t.cfg:4: server setting 'on-marked-down': unknown action 'kill' (expected shutdown-sessions)"
    );
    assert!(
        e[3].starts_with("t.cfg:5: server setting 'error-limit': "),
        "{e:?}"
    );
}
