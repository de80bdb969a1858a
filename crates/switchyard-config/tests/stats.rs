//! `stats` lines of proxies (the stats page) and the Prometheus exporter rule.

use std::time::Duration;

use switchyard_config::*;

fn src(text: &str) -> Source {
    Source {
        name: "t.cfg".into(),
        text: text.into(),
    }
}

fn ok(text: &str) -> Parsed {
    match parse_sources(&[src(text)]) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<String> {
    match parse_sources(&[src(text)]) {
        Ok(p) => panic!("expected errors, got config with warnings {:?}", p.warnings),
        Err(Diagnostics(d)) => d
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.iter().map(|d| d.to_string()).collect()
}

/// Every diagnostic, whether the configuration is accepted or not.
fn diagnostics(text: &str) -> Vec<String> {
    match parse_sources(&[src(text)]) {
        Ok(p) => p.warnings,
        Err(Diagnostics(d)) => d,
    }
    .iter()
    .map(|d| d.to_string())
    .collect()
}

const BACKEND: &str = "backend be\n    server s1 127.0.0.1:5432\n";

#[test]
fn a_full_stats_section() {
    let p = ok(&format!(
        "listen stats\n    bind 127.0.0.1:8404\n    mode http\n    stats enable\n    stats uri /stats\n\
         \x20   stats refresh 10s\n    stats realm Switchyard\\ statistics\n    stats auth admin:pa:ss\n\
         \x20   stats auth ops:secret\n    stats hide-version\n    stats admin if LOCALHOST\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n{BACKEND}"
    ));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let stats = p.config.proxy("stats").unwrap();
    assert!(stats.is_stats_only());
    let s = &stats.stats;
    assert!(s.enabled);
    assert_eq!(s.span.as_ref().unwrap().line, 4);
    assert_eq!(s.uri, "/stats");
    assert_eq!(s.refresh, Some(Duration::from_secs(10)));
    assert_eq!(s.realm.as_deref(), Some("Switchyard statistics"));
    assert_eq!(s.auths.len(), 2);
    assert_eq!(s.auths[0].user, "admin");
    // Split at the first colon: the password may hold more.
    assert_eq!(s.auths[0].password.resolve().unwrap(), "pa:ss");
    assert_eq!(s.auths[1].user, "ops");
    assert!(s.hide_version);
    assert_eq!(s.admin, Some(StatsAdmin::Localhost));
    assert_eq!(s.prometheus_uri.as_deref(), Some("/metrics"));
    // The password never shows in debug output.
    assert!(!format!("{s:?}").contains("secret"));
    assert!(!p.config.proxy("be").unwrap().is_stats_only());
}

#[test]
fn defaults_and_implicit_enable() {
    let p = ok("frontend stats\n    bind :8404\n    mode http\n    stats auth a:b\n");
    let s = &p.config.proxy("stats").unwrap().stats;
    // Any stats setting enables the page, as in HAProxy.
    assert!(s.enabled);
    assert_eq!(s.uri, "/haproxy?stats");
    assert_eq!(s.uri, Stats::DEFAULT_URI);
    assert_eq!(s.refresh, None);
    assert_eq!(s.realm, None);
    assert_eq!(s.admin, None);
    assert!(!s.hide_version);
    assert!(p.config.proxy("stats").unwrap().is_stats_only());

    // Settings written in `defaults` are inherited.
    let p = ok(
        "defaults\n    mode http\n    stats uri /s\n    stats refresh 3s\n\
                frontend stats\n    bind :8404\n    stats enable\n",
    );
    let s = &p.config.proxy("stats").unwrap().stats;
    assert_eq!(s.uri, "/s");
    assert_eq!(s.refresh, Some(Duration::from_secs(3)));

    // `if TRUE` wins over `if LOCALHOST`, whatever the order.
    for order in [
        "if TRUE\n    stats admin if LOCALHOST",
        "if LOCALHOST\n    stats admin if TRUE",
    ] {
        let p = ok(&format!(
            "listen stats\n    bind :8404\n    mode http\n    stats admin {order}\n"
        ));
        assert_eq!(
            p.config.proxy("stats").unwrap().stats.admin,
            Some(StatsAdmin::Always)
        );
    }
}

#[test]
fn a_prometheus_only_frontend() {
    let p = ok(
        "frontend prometheus\n    bind :8405\n    mode http\n    http-request use-service prometheus-exporter if { path /m }\n    no log\n",
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let px = p.config.proxy("prometheus").unwrap();
    assert!(!px.stats.enabled);
    assert_eq!(px.stats.prometheus_uri.as_deref(), Some("/m"));
    assert!(px.is_stats_only());
}

#[test]
fn errors_name_file_and_line() {
    let e = errs(
        "listen stats\n    bind :8404\n    mode http\n    stats\n    stats uri\n    stats uri /a /b\n\
         \x20   stats refresh soon\n    stats auth nopassword\n    stats auth :x\n    stats admin\n\
         \x20   stats admin if\n    stats frobnicate\n    stats socket /tmp/s\n    stats enable now\n",
    );
    assert_eq!(
        e,
        [
            "t.cfg:4: 'stats' expects enable, uri, realm, refresh, auth, hide-version or admin",
            "t.cfg:5: 'stats uri' expects a URI prefix (e.g. /stats)",
            "t.cfg:6: 'stats uri' expects a URI prefix (e.g. /stats) only (escape spaces with '\\')",
            "t.cfg:7: 'stats refresh': 'soon': expected a number",
            "t.cfg:8: 'stats auth' expects USER:PASSWORD",
            "t.cfg:9: 'stats auth': the user name is empty",
            "t.cfg:10: 'stats admin' requires either 'if' or 'unless' followed by a condition (e.g. 'stats admin if LOCALHOST')",
            "t.cfg:11: 'stats admin' requires either 'if' or 'unless' followed by a condition (e.g. 'stats admin if LOCALHOST')",
            "t.cfg:12: unknown 'stats' keyword 'frobnicate' (expected enable, uri, realm, refresh, auth, hide-version or admin)",
            "t.cfg:13: 'stats socket' is only valid in the 'global' section",
            "t.cfg:14: 'stats enable': unexpected argument 'now'",
        ]
    );
    assert_eq!(
        errs("defaults\n    stats admin if TRUE\n"),
        ["t.cfg:2: 'stats admin' not allowed in 'defaults' section"]
    );
}

#[test]
fn what_cannot_take_effect_warns() {
    // Conditions Switchyard cannot evaluate: admin stays off.
    let w = warnings(
        "listen stats\n    bind :8404\n    mode http\n    stats admin if { src 10.0.0.0/8 }\n",
    );
    assert_eq!(
        w,
        ["t.cfg:4: warning: 'stats admin if { src 10.0.0.0/8 }': only 'if TRUE' and 'if LOCALHOST' are supported; admin actions stay disabled"]
    );
    let p = ok("listen stats\n    bind :8404\n    mode http\n    stats admin unless LOCALHOST\n");
    assert_eq!(p.config.proxy("stats").unwrap().stats.admin, None);

    // The page needs HTTP mode (HAProxy's warning), pointed at the first stats line.
    let w = warnings(&format!(
        "listen l\n    bind :5000\n    stats enable\n    stats uri /s\n    server s 127.0.0.1:1\n{BACKEND}"
    ));
    assert_eq!(
        w,
        ["t.cfg:3: warning: 'stats' statement ignored for listen 'l' as it requires HTTP mode"]
    );
    // A backend does not serve pages here.
    let w = warnings("backend b\n    mode http\n    stats enable\n");
    assert_eq!(
        w,
        ["t.cfg:3: warning: 'stats' ignored for backend 'b': Switchyard serves the stats page from frontend and listen sections only"]
    );

    // Other use-service forms, or the exporter where it cannot be served.
    for rule in [
        "http-request use-service prometheus-exporter",
        "http-request use-service prometheus-exporter if { path_beg /metrics }",
        "http-request use-service lua.hello if { path /hello }",
        "http-request use-service prometheus-exporter if { path metrics }",
    ] {
        let w = diagnostics(&format!(
            "frontend f\n    bind :1\n    mode http\n    {rule}\n"
        ));
        assert!(
            w.iter().any(|w| w
                .starts_with("t.cfg:4: warning: 'http-request use-service' is only supported as")),
            "{rule}: {w:?}"
        );
    }
    let w = warnings(
        "defaults\n    http-request use-service prometheus-exporter if { path /metrics }\n",
    );
    assert_eq!(
        w,
        ["t.cfg:2: warning: the Prometheus exporter is served by frontend and listen sections only; rule ignored in 'defaults' section"]
    );
    // Other http-request rules are still only known.
    let w = warnings(
        "frontend f\n    bind :1\n    mode http\n    stats enable\n    http-request deny\n",
    );
    assert_eq!(
        w,
        ["t.cfg:5: warning: 'http-request' is not implemented yet, ignored"]
    );
}

#[test]
fn a_stats_page_needs_its_own_section() {
    // With servers or a backend to route to, the section proxies HTTP and its stats lines
    // are ignored, with a warning naming the line.
    for config in [
        format!(
            "frontend f\n    bind :8404\n    mode http\n    stats enable\n    default_backend be\n{BACKEND}    mode http\n"
        ),
        "listen l\n    bind :8404\n    mode http\n    stats enable\n    server s 127.0.0.1:1\n"
            .to_string(),
    ] {
        let w = warnings(&config);
        assert!(
            w.iter().any(|w| w.starts_with("t.cfg:4: warning:")
                && w.contains("need a section of their own")),
            "{w:?}"
        );
    }
    // A plain HTTP frontend without stats is a proxy like any other.
    assert_eq!(
        ok(&format!(
            "frontend f\n    bind :8404\n    mode http\n    default_backend be\n{BACKEND}    mode http\n"
        ))
        .config
        .proxies[0]
            .mode,
        Mode::Http
    );
    // A stats-only section does not warn about having no backend.
    assert!(
        warnings("frontend stats\n    bind :8404\n    mode http\n    stats enable\n").is_empty()
    );
}

#[test]
fn no_panic_on_odd_stats_lines() {
    for line in [
        "stats",
        "stats uri",
        "stats auth",
        "stats auth :",
        "stats auth a:",
        "stats admin if",
        "stats admin unless",
        "stats admin if TRUE extra",
        "stats refresh 0",
        "stats refresh -1",
        "stats realm",
        "stats show-node",
        "stats scope .",
        "stats http-request deny",
        "http-request use-service",
        "http-request use-service prometheus-exporter if { path",
        "http-request use-service prometheus-exporter if { path / }",
    ] {
        let _ = parse_sources(&[src(&format!(
            "listen stats\n    bind :8404\n    mode http\n    {line}\n"
        ))]);
        let _ = parse_sources(&[src(&format!("defaults\n    {line}\n"))]);
        let _ = parse_sources(&[src(&format!("backend b\n    {line}\n"))]);
    }
}
