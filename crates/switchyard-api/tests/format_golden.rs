//! The formatters against real HAProxy 2.6 output (tests/golden/haproxy_*.txt, captured by
//! scripts/capture-haproxy-golden.sh from tests/golden/haproxy_reference.cfg).
//!
//! The model built here is the reference config's state after checks settled: pg1 UP
//! (L4OK), pg2 DOWN (L4CON), pg3 backup without check, pg4 `disabled`, my1 UP, be_dynamic
//! empty. The ports are read from the captured config, so addresses compare exactly.
//!
//! What a golden file and our output are compared on: everything, byte for byte, except
//! values that depend on time or on the machine, which are replaced by `*` on both sides
//! before comparing (field by field, so names, order, types, tags and every other value
//! still compare exactly):
//! - show info: Pid, uptime, start time, memory pools, ulimit/maxsock, tasks/run queue/idle,
//!   node (host name), connection/request counters and rates (the capture's own CLI
//!   connections count there), bytes out;
//! - show stat: `lastchg`, `downtime` (seconds) and `check_duration` (ms);
//! - show servers state: `srv_time_since_last_change`.

use std::path::PathBuf;

use switchyard_api::format::{self, replies, FormatKind, CLI_TERMINATOR};
use switchyard_api::model::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str) -> String {
    let p = golden_dir().join(format!("haproxy_{name}.txt"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The port of `server <name> 127.0.0.1:<port>` in the captured config.
fn cfg_port(server: &str) -> u16 {
    let cfg = std::fs::read_to_string(golden_dir().join("haproxy_reference.cfg")).unwrap();
    let line = cfg
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("server {server} ")))
        .unwrap_or_else(|| panic!("no server {server} in reference cfg"));
    let addr = line.split_whitespace().nth(2).unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------- the reference model

fn checked_up(rise: u32, fall: u32) -> Check {
    Check {
        state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED),
        status: CheckStatus::L4Ok,
        result: CheckResult::Passed,
        rise,
        fall,
        health: rise + fall - 1,
        ..Check::default()
    }
}

fn server(id: u32, name: &str, port: u16, weight: u32) -> Server {
    Server {
        name: name.into(),
        id,
        addr: "127.0.0.1".into(),
        port,
        op_state: OpState::Running,
        uweight: weight,
        iweight: weight,
        eweight: weight,
        pool_purge_delay_ms: 5000,
        ..Server::default()
    }
}

fn reference_stats() -> Stats {
    let live = cfg_port("pg1");
    let dead = cfg_port("pg2");

    let mut pg1 = server(1, "pg1", live, 10);
    pg1.check = checked_up(2, 3);
    pg1.need_conn_est = 1;
    pg1.used_max = 1;

    let mut pg2 = server(2, "pg2", dead, 20);
    pg2.op_state = OpState::Stopped;
    pg2.check = Check {
        state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED),
        status: CheckStatus::L4Con,
        result: CheckResult::Failed,
        desc: "Connection refused".into(),
        rise: 2,
        fall: 3,
        health: 0,
        failed: 1,
        down_transitions: 1,
        ..Check::default()
    };
    pg2.need_conn_est = 1;
    pg2.used_max = 1;

    let mut pg3 = server(3, "pg3", live, 5);
    pg3.backup = true;
    pg3.check.health = 2; // no check: stays at rise

    let mut pg4 = server(4, "pg4", live, 3);
    pg4.op_state = OpState::Stopped;
    pg4.admin_state = AdminState(AdminState::FMAINT | AdminState::CMAINT);
    pg4.check.state = CheckState(CheckState::PAUSED);

    let mut my1 = server(1, "my1", live, 1);
    my1.check = checked_up(2, 3);
    my1.need_conn_est = 1;
    my1.used_max = 1;

    let fe = FrontendStats {
        slim: 4000,
        ..FrontendStats::default()
    };
    let be = |algo: &str, fullconn: u32, servers: Vec<Server>| BackendStats {
        algo: algo.into(),
        fullconn,
        servers,
        ..BackendStats::default()
    };
    let proxy = |iid: u32, name: &str, fe: Option<FrontendStats>, be: Option<BackendStats>| Proxy {
        name: name.into(),
        iid,
        forced_id: false,
        mode: Mode::Tcp,
        frontend: fe,
        backend: be,
    };
    Stats {
        proxies: vec![
            proxy(2, "fe_pg", Some(fe.clone()), None),
            proxy(
                3,
                "be_pg",
                None,
                Some(be("roundrobin", 400, vec![pg1, pg2, pg3, pg4])),
            ),
            proxy(
                4,
                "li_mysql",
                Some(fe),
                Some(be("leastconn", 400, vec![my1])),
            ),
            proxy(5, "be_dynamic", None, Some(be("roundrobin", 1, vec![]))),
        ],
    }
}

fn backend_mut<'a>(stats: &'a mut Stats, name: &str) -> &'a mut BackendStats {
    stats
        .proxies
        .iter_mut()
        .find(|p| p.name == name)
        .and_then(|p| p.backend.as_mut())
        .unwrap()
}

/// After `add server be_dynamic/s1 127.0.0.1:15000`: in forced maintenance, weight 1.
fn with_dynamic_s1(mut stats: Stats) -> Stats {
    let mut s1 = server(1, "s1", 15000, 1);
    s1.op_state = OpState::Stopped;
    s1.admin_state = AdminState(AdminState::FMAINT);
    s1.pool_max_conn = Some(0);
    backend_mut(&mut stats, "be_dynamic").servers.push(s1);
    stats
}

fn reference_info() -> Info {
    Info {
        name: "HAProxy".into(),
        version: "2.6.12-1+deb12u4".into(),
        release_date: "2026/10/17".into(),
        nbthread: 2,
        pid: 1,
        uptime_sec: 5,
        start_time_sec: 0,
        pool_alloc_bytes: 0,
        pool_used_bytes: 0,
        pool_failed: 0,
        ulimit_n: 1024,
        maxsock: 1024,
        maxconn: 4000,
        hard_maxconn: 4000,
        curr_conns: 0,
        cum_conns: 0,
        cum_req: 0,
        conn_rate: 0,
        conn_rate_limit: 0,
        max_conn_rate: 0,
        sess_rate: 0,
        sess_rate_limit: 0,
        max_sess_rate: 0,
        tasks: 0,
        run_queue: 0,
        idle_pct: 100,
        node: "host".into(),
        description: None,
        stopping: false,
        jobs: 4,
        unstoppable_jobs: 0,
        listeners: 3,
        dropped_logs: 0,
        busy_polling: false,
        failed_resolutions: 0,
        total_bytes_out: 0,
        bytes_out_rate: 0,
        tainted: 0,
    }
}

// ---------------------------------------------------------------- normalisation

const INFO_VOLATILE: &[&str] = &[
    "Pid",
    "Uptime",
    "Uptime_sec",
    "Start_time_sec",
    "PoolAlloc_MB",
    "PoolUsed_MB",
    "PoolAlloc_bytes",
    "PoolUsed_bytes",
    "Ulimit-n",
    "Maxsock",
    "Tasks",
    "Run_queue",
    "Idle_pct",
    "node",
    "CurrConns",
    "CumConns",
    "CumReq",
    "ConnRate",
    "MaxConnRate",
    "SessRate",
    "MaxSessRate",
    "TotalBytesOut",
    "BytesOutRate",
];

const STAT_VOLATILE: &[&str] = &["lastchg", "downtime", "check_duration"];

/// `Name: value` lines.
fn norm_info_plain(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| match l.split_once(": ") {
            Some((k, _)) if INFO_VOLATILE.contains(&k) => format!("{k}: *\n"),
            _ => l.to_string(),
        })
        .collect()
}

/// Typed lines `head.name.1:TAGS:type:value` (info: `pos.name.1`; stat:
/// `X.iid.sid.pos.name.1`); the value may contain `:`.
fn norm_typed(s: &str, volatile: &[&str]) -> String {
    s.split_inclusive('\n')
        .map(|l| {
            let parts: Vec<&str> = l.splitn(4, ':').collect();
            if parts.len() == 4 {
                // No field name contains a dot: it is the key's last segment.
                let key = parts[0].strip_suffix(".1").unwrap_or(parts[0]);
                let name = key.rsplit('.').next().unwrap_or("");
                if volatile.contains(&name) {
                    return format!("{}:{}:{}:*\n", parts[0], parts[1], parts[2]);
                }
            }
            l.to_string()
        })
        .collect()
}

/// In JSON, every field is `..."name":"NAME"},...,"value":{"type":"T","value":V}}`: replace V.
fn norm_json(s: &str, volatile: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\"name\":\"") {
        let start = i + "\"name\":\"".len();
        let end = start + rest[start..].find('"').unwrap();
        let name = &rest[start..end];
        let vmark = "\"value\":{\"type\":\"";
        let vi = end + rest[end..].find(vmark).unwrap();
        let after_type = vi + vmark.len();
        let type_end = after_type + rest[after_type..].find('"').unwrap();
        let val_start = type_end + "\",\"value\":".len();
        let val_end = val_start + rest[val_start..].find("}}").unwrap();
        out.push_str(&rest[..val_start]);
        if volatile.contains(&name) {
            out.push('*');
        } else {
            out.push_str(&rest[val_start..val_end]);
        }
        rest = &rest[val_end..];
    }
    out.push_str(rest);
    out
}

fn norm_csv(s: &str) -> String {
    let mut lines = s.split_inclusive('\n');
    let header = lines.next().unwrap_or("");
    let names: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let mut out = header.to_string();
    for l in lines {
        if !l.contains(',') {
            out.push_str(l);
            continue;
        }
        let cols: Vec<String> = l
            .trim_end_matches('\n')
            .split(',')
            .enumerate()
            .map(|(i, v)| {
                let name = names.get(i).copied().unwrap_or("");
                if STAT_VOLATILE.contains(&name) && !v.is_empty() {
                    "*".to_string()
                } else {
                    v.to_string()
                }
            })
            .collect();
        out.push_str(&cols.join(","));
        out.push('\n');
    }
    out
}

/// Column 10 (`srv_time_since_last_change`) of data lines.
fn norm_servers_state(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| {
            let cols: Vec<&str> = l.trim_end_matches('\n').split(' ').collect();
            if cols.len() == 25 && !l.starts_with('#') {
                let mut c: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
                c[9] = "*".into();
                format!("{}\n", c.join(" "))
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Compares line by line, and JSON field by field, for a readable failure.
fn assert_same(name: &str, ours: &str, theirs: &str) {
    let split = |s: &str| -> Vec<String> {
        s.split('\n')
            .flat_map(|l| l.split("},{").map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    for (i, (a, b)) in split(ours).iter().zip(split(theirs).iter()).enumerate() {
        assert_eq!(a, b, "{name}: line/field {} differs", i + 1);
    }
    if ours != theirs {
        panic!(
            "{name}: differs in length or trailing bytes: ours ends {:?}, HAProxy's ends {:?}",
            &ours[ours.len().saturating_sub(80)..],
            &theirs[theirs.len().saturating_sub(80)..]
        );
    }
}

fn check(name: &str, body: &str, norm: impl Fn(&str) -> String) {
    let ours = format!("{body}{CLI_TERMINATOR}");
    assert_same(name, &norm(&ours), &norm(&golden(name)));
}

fn exact(name: &str, body: &str) {
    let ours = format!("{body}{CLI_TERMINATOR}");
    assert_same(name, &ours, &golden(name));
}

// ---------------------------------------------------------------- show info

#[test]
fn show_info_matches_haproxy() {
    let info = reference_info();
    check(
        "show_info",
        &format::show_info(&info, FormatKind::Csv),
        norm_info_plain,
    );
    check(
        "show_info_typed",
        &format::show_info(&info, FormatKind::Typed),
        |s| norm_typed(s, INFO_VOLATILE),
    );
    check(
        "show_info_json",
        &format::show_info(&info, FormatKind::Json),
        |s| norm_json(s, INFO_VOLATILE),
    );
}

// ---------------------------------------------------------------- show stat

fn stat(filter: &StatFilter, kind: FormatKind, stats: &Stats) -> String {
    format::show_stat(stats, filter, kind)
}

#[test]
fn show_stat_matches_haproxy() {
    let stats = reference_stats();
    let all = StatFilter::default();
    check("show_stat", &stat(&all, FormatKind::Csv, &stats), norm_csv);
    check(
        "show_stat_typed",
        &stat(&all, FormatKind::Typed, &stats),
        |s| norm_typed(s, STAT_VOLATILE),
    );
    check(
        "show_stat_json",
        &stat(&all, FormatKind::Json, &stats),
        |s| norm_json(s, STAT_VOLATILE),
    );
}

#[test]
fn show_stat_filters_match_haproxy() {
    let stats = reference_stats();
    let servers_only = StatFilter {
        types: StatFilter::SERVER,
        ..StatFilter::default()
    };
    check(
        "show_stat_servers",
        &stat(&servers_only, FormatKind::Csv, &stats),
        norm_csv,
    );
    let up = StatFilter {
        types: StatFilter::SERVER,
        up: true,
        ..StatFilter::default()
    };
    check(
        "show_stat_up",
        &stat(&up, FormatKind::Csv, &stats),
        norm_csv,
    );
    let no_maint = StatFilter {
        types: StatFilter::SERVER,
        no_maint: true,
        ..StatFilter::default()
    };
    check(
        "show_stat_no_maint",
        &stat(&no_maint, FormatKind::Csv, &stats),
        norm_csv,
    );
    let sid = StatFilter {
        proxy: ProxyFilter::Id(3),
        types: StatFilter::SERVER,
        sid: Some(2),
        ..StatFilter::default()
    };
    check(
        "show_stat_sid",
        &stat(&sid, FormatKind::Csv, &stats),
        norm_csv,
    );
    let be_pg = StatFilter {
        proxy: ProxyFilter::Name("be_pg".into()),
        ..StatFilter::default()
    };
    check(
        "show_stat_be_pg",
        &stat(&be_pg, FormatKind::Csv, &stats),
        norm_csv,
    );
    check(
        "show_stat_json_be_pg",
        &stat(&be_pg, FormatKind::Json, &stats),
        |s| norm_json(s, STAT_VOLATILE),
    );
    let empty = StatFilter {
        proxy: ProxyFilter::Name("be_dynamic".into()),
        types: StatFilter::SERVER,
        ..StatFilter::default()
    };
    exact("show_stat_empty", &stat(&empty, FormatKind::Csv, &stats));
    exact(
        "show_stat_empty_typed",
        &stat(&empty, FormatKind::Typed, &stats),
    );
    exact(
        "show_stat_empty_json",
        &stat(&empty, FormatKind::Json, &stats),
    );
    exact("show_stat_unknown", replies::NO_SUCH_PROXY);
}

#[test]
fn show_stat_after_add_server_matches_haproxy() {
    let stats = with_dynamic_s1(reference_stats());
    let f = StatFilter {
        proxy: ProxyFilter::Name("be_dynamic".into()),
        ..StatFilter::default()
    };
    check(
        "show_stat_after_add",
        &stat(&f, FormatKind::Csv, &stats),
        norm_csv,
    );
    check(
        "show_stat_after_add_typed",
        &stat(&f, FormatKind::Typed, &stats),
        |s| norm_typed(s, STAT_VOLATILE),
    );
}

#[test]
fn show_stat_weight_zero_matches_haproxy() {
    let mut stats = reference_stats();
    let be = backend_mut(&mut stats, "li_mysql");
    be.servers[0].uweight = 0;
    be.servers[0].eweight = 0;
    be.chkdown = 1;
    let f = StatFilter {
        proxy: ProxyFilter::Name("li_mysql".into()),
        ..StatFilter::default()
    };
    check(
        "show_stat_weight_zero",
        &stat(&f, FormatKind::Csv, &stats),
        norm_csv,
    );
    exact(
        "get_weight_zero",
        &format::get_weight(&stats, "li_mysql/my1"),
    );
}

// ---------------------------------------------------------------- servers state/conn, backend

#[test]
fn show_servers_state_matches_haproxy() {
    let stats = reference_stats();
    check(
        "show_servers_state",
        &format::show_servers_state(&stats, None),
        norm_servers_state,
    );
    check(
        "show_servers_state_be_pg",
        &format::show_servers_state(&stats, Some("be_pg")),
        norm_servers_state,
    );
    exact(
        "show_servers_state_unknown",
        &format::show_servers_state(&stats, Some("nope")),
    );

    let stats = with_dynamic_s1(stats);
    check(
        "show_servers_state_after_add",
        &format::show_servers_state(&stats, None),
        norm_servers_state,
    );
    check(
        "show_servers_state_be_dynamic",
        &format::show_servers_state(&stats, Some("be_dynamic")),
        norm_servers_state,
    );

    // After set weight 50, set server addr 127.0.0.2 port 15001, then addr 127.0.0.3 port
    // 15002, set server weight 7, drain, then maint.
    let mut stats = stats;
    {
        let s1 = &mut backend_mut(&mut stats, "be_dynamic").servers[0];
        s1.addr = "127.0.0.3".into();
        s1.port = 15002;
        s1.uweight = 7;
        s1.admin_state = AdminState(AdminState::FMAINT);
    }
    check(
        "show_servers_state_maint",
        &format::show_servers_state(&stats, Some("be_dynamic")),
        norm_servers_state,
    );
    backend_mut(&mut stats, "be_dynamic").servers.clear();
    exact(
        "show_servers_state_after_del",
        &format::show_servers_state(&stats, Some("be_dynamic")),
    );
}

#[test]
fn show_backend_and_conn_match_haproxy() {
    let stats = reference_stats();
    exact("show_backend", &format::show_backend(&stats));
    exact(
        "show_servers_conn",
        &format::show_servers_conn(&stats, None, 2),
    );
    exact(
        "show_servers_conn_be_pg",
        &format::show_servers_conn(&stats, Some("be_pg"), 2),
    );
    exact(
        "show_servers_conn_unknown",
        &format::show_servers_conn(&stats, Some("nope"), 2),
    );
}

// ---------------------------------------------------------------- get weight, replies

#[test]
fn get_weight_matches_haproxy() {
    let stats = reference_stats();
    exact("get_weight", &format::get_weight(&stats, "be_pg/pg1"));
    exact("get_weight_pg3", &format::get_weight(&stats, "be_pg/pg3"));
    exact(
        "get_weight_unknown_backend",
        &format::get_weight(&stats, "nope/pg1"),
    );
    exact(
        "get_weight_unknown_server",
        &format::get_weight(&stats, "be_pg/nope"),
    );
    exact("get_weight_no_slash", &format::get_weight(&stats, "be_pg"));

    let mut stats = with_dynamic_s1(stats);
    backend_mut(&mut stats, "be_dynamic").servers[0].uweight = 50;
    exact(
        "get_weight_after_set",
        &format::get_weight(&stats, "be_dynamic/s1"),
    );
}

#[test]
fn fixed_replies_match_haproxy() {
    use replies::*;
    let cases: &[(&str, &str)] = &[
        ("add_server", ADD_SERVER_OK),
        ("add_server_duplicate", ADD_SERVER_EXISTS),
        ("add_server_unknown_backend", ADD_DEL_NO_SUCH_BACKEND),
        ("del_server", DEL_SERVER_OK),
        ("del_server_static", DEL_SERVER_OK),
        ("del_server_not_maint", DEL_SERVER_NOT_MAINT),
        ("del_server_has_sessions", DEL_SERVER_HAS_CONNS),
        ("del_server_unknown_server", DEL_NO_SUCH_SERVER),
        ("del_server_unknown_backend", ADD_DEL_NO_SUCH_BACKEND),
        ("set_weight", OK_EMPTY),
        ("set_weight_percent", OK_EMPTY),
        ("set_weight_zero", OK_EMPTY),
        ("set_weight_invalid", SET_WEIGHT_INVALID),
        ("set_weight_unknown_backend", NO_SUCH_BACKEND),
        ("set_weight_unknown_server", NO_SUCH_SERVER),
        ("set_server_state_ready", OK_EMPTY),
        ("set_server_state_drain", OK_EMPTY),
        ("set_server_state_maint", OK_EMPTY),
        ("set_server_pg1_maint", OK_EMPTY),
        ("set_server_weight", OK_EMPTY),
        ("set_server_unknown_backend", NO_SUCH_BACKEND),
        ("set_server_unknown_server", NO_SUCH_SERVER),
    ];
    for (name, body) in cases {
        exact(name, body);
    }
    exact(
        "set_server_addr",
        &set_server_addr("127.0.0.1", "127.0.0.2", Some((15000, 15001))),
    );
    exact(
        "set_server_addr_same",
        &set_server_addr("127.0.0.2", "127.0.0.2", None),
    );
    exact(
        "set_server_addr_only",
        &set_server_addr("127.0.0.2", "127.0.0.3", None),
    );
    exact(
        "set_server_addr_port_same",
        &set_server_addr("127.0.0.3", "127.0.0.3", Some((15001, 15001))),
    );
    exact(
        "set_server_addr_port_only",
        &set_server_addr("127.0.0.3", "127.0.0.3", Some((15001, 15002))),
    );
}

/// The normalisation hides exactly the volatile values: a guard against masking too much.
#[test]
fn normalisation_is_narrow() {
    let csv = norm_csv(&golden("show_stat"));
    // lastchg on the 5 servers and 3 backends (frontends have none); downtime on pg1, pg2,
    // my1, be_pg, li_mysql (be_dynamic has no server); check_duration on the 3 checked servers.
    assert_eq!(csv.matches('*').count(), 8 + 5 + 3);
    let typed = norm_typed(&golden("show_stat_typed"), STAT_VOLATILE);
    assert_eq!(typed.matches(":*\n").count(), 16);
    let json = norm_json(&golden("show_stat_json"), STAT_VOLATILE);
    assert_eq!(json.matches("\"value\":*}").count(), 16);
    let info = norm_info_plain(&golden("show_info"));
    assert_eq!(info.matches(": *\n").count(), INFO_VOLATILE.len());
    let state = norm_servers_state(&golden("show_servers_state"));
    assert_eq!(state.matches(" * ").count(), 5);
}

/// Every captured reply is used by some test above (or listed here as not ours).
#[test]
fn every_golden_file_is_known() {
    let not_formatters = ["help", "unknown_command", "show_servers_conn_with_session"];
    let src = include_str!("format_golden.rs");
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let Some(n) = name
            .strip_prefix("haproxy_")
            .and_then(|n| n.strip_suffix(".txt"))
        else {
            continue;
        };
        assert!(
            not_formatters.contains(&n) || src.contains(&format!("\"{n}\"")),
            "golden {name} is not compared by any test"
        );
    }
}

// ---------------------------------------------------------------- mode http

/// The port of `server <name> 127.0.0.1:<port>` in the captured HTTP config.
fn http_cfg_port(server: &str) -> u16 {
    let cfg = std::fs::read_to_string(golden_dir().join("haproxy_http_reference.cfg")).unwrap();
    let line = cfg
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("server {server} ")))
        .unwrap_or_else(|| panic!("no server {server} in the HTTP reference cfg"));
    let addr = line.split_whitespace().nth(2).unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Besides `STAT_VOLATILE`, the HTTP/1 multiplexer's counters: the engine keeps none (it
/// prints 0) and HAProxy's depend on how it pooled connections.
const HTTP_VOLATILE: &[&str] = &[
    "lastchg",
    "downtime",
    "check_duration",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
];

fn norm_csv_http(s: &str) -> String {
    let mut lines = s.split_inclusive('\n');
    let header = lines.next().unwrap_or("");
    let names: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let mut out = header.to_string();
    for l in lines {
        let cols: Vec<String> = l
            .trim_end_matches('\n')
            .split(',')
            .enumerate()
            .map(|(i, v)| {
                let name = names.get(i).copied().unwrap_or("");
                if HTTP_VOLATILE.contains(&name) && !v.is_empty() {
                    "*".to_string()
                } else {
                    v.to_string()
                }
            })
            .collect();
        out.push_str(&cols.join(","));
        out.push('\n');
    }
    out
}

/// Traffic counters as captured: `stot`, `bin`, `bout`, the busiest second, responses.
fn http_counters(stot: u64, bin: u64, bout: u64, rate: (u32, u32), hrsp: [u64; 6]) -> Counters {
    Counters {
        smax: stot.min(1) as u32,
        stot,
        bin,
        bout,
        rate: rate.0,
        rate_max: rate.1,
        hrsp,
        ..Counters::default()
    }
}

/// Backend/server counters of the capture: `lbtot`/`connect` equal `stot`, the timing
/// averages and maxima as HAProxy computed them, `lastsess` seconds ago.
fn http_backend_counters(c: Counters, rtime: u32, lastsess: Option<u32>) -> BackendCounters {
    BackendCounters {
        lbtot: c.stot,
        connect: c.stot,
        req_tot: c.hrsp.iter().sum(),
        lastsess,
        timings: Timings {
            rtime,
            ttime: rtime,
            rtime_max: if rtime == 3994 { 5013 } else { rtime },
            ttime_max: if rtime == 3994 { 5013 } else { rtime },
            ..Timings::default()
        },
        counters: c,
        ..BackendCounters::default()
    }
}

/// The HTTP reference state (scripts/capture-haproxy-http-golden.sh): fe_web -> be_web/web1
/// got 3 x 200 and 2 x 404, li_web/w1 one 200, li_down (d1 DOWN) answered one 503 itself.
fn http_reference_stats() -> Stats {
    let web = http_cfg_port("web1");
    let dead = http_cfg_port("d1");
    let frontend = |c: Counters, req: (u32, u32), conn: (u32, u32)| FrontendStats {
        req_tot: c.hrsp.iter().sum(),
        req_rate: req.0,
        req_rate_max: req.1,
        conn_rate: conn.0,
        conn_rate_max: conn.1,
        conn_tot: c.stot,
        counters: c,
        slim: 4000,
        ..FrontendStats::default()
    };
    let be = |counters: BackendCounters, servers: Vec<Server>| BackendStats {
        counters,
        fullconn: 400,
        algo: "roundrobin".into(),
        servers,
        ..BackendStats::default()
    };
    let proxy = |iid: u32, name: &str, fe: Option<FrontendStats>, be: Option<BackendStats>| Proxy {
        name: name.into(),
        iid,
        forced_id: false,
        mode: Mode::Http,
        frontend: fe,
        backend: be,
    };
    let served = |n: &str, c: Counters, rtime: u32, lastsess: u32| {
        let mut s = server(1, n, web, 1);
        s.check.health = 0;
        s.need_conn_est = 1;
        s.counters = http_backend_counters(c, rtime, Some(lastsess));
        s
    };
    let fe_web = http_counters(5, 424, 299, (0, 2), [0, 3, 0, 2, 0, 0]);
    let mut web1 = served("web1", fe_web.clone(), 3994, 21);
    web1.need_conn_est = 0;
    let li_web = http_counters(1, 82, 55, (0, 1), [0, 1, 0, 0, 0, 0]);
    let mut w1 = served("w1", li_web.clone(), 14992, 16);
    // One request over its connection, which went idle: unsafe (`idle_conn_cur`).
    w1.idle_conns = 1;
    w1.unsafe_conns = 1;

    let li_down = http_counters(1, 82, 217, (1, 1), [0, 0, 0, 0, 1, 0]);
    let mut d1 = server(1, "d1", dead, 1);
    d1.op_state = OpState::Stopped;
    d1.need_conn_est = 1;
    d1.downtime = 40;
    d1.check = Check {
        state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED),
        status: CheckStatus::L4Con,
        result: CheckResult::Failed,
        desc: "Connection refused".into(),
        rise: 2,
        fall: 3,
        health: 0,
        failed: 1,
        down_transitions: 1,
        ..Check::default()
    };
    let mut li_down_be = BackendCounters {
        counters: li_down.clone(),
        econ: 1,
        req_tot: 1,
        ..BackendCounters::default()
    };
    li_down_be.counters.hrsp = [0, 0, 0, 0, 1, 0];

    Stats {
        proxies: vec![
            proxy(
                2,
                "fe_web",
                Some(frontend(fe_web.clone(), (0, 2), (0, 2))),
                None,
            ),
            proxy(
                3,
                "be_web",
                None,
                Some(be(
                    http_backend_counters(fe_web, 3994, Some(21)),
                    vec![web1],
                )),
            ),
            proxy(
                4,
                "li_web",
                Some(frontend(li_web.clone(), (0, 1), (0, 1))),
                Some(be(http_backend_counters(li_web, 14992, Some(16)), vec![w1])),
            ),
            proxy(
                5,
                "li_down",
                Some(frontend(li_down, (1, 1), (1, 1))),
                Some(BackendStats {
                    chkdown: 1,
                    ..be(li_down_be, vec![d1])
                }),
            ),
        ],
    }
}

#[test]
fn show_stat_http_matches_haproxy() {
    let stats = http_reference_stats();
    for (px, csv, typed, json) in [
        (
            "fe_web",
            "http_show_stat_fe_web",
            "http_show_stat_fe_web_typed",
            "http_show_stat_fe_web_json",
        ),
        (
            "be_web",
            "http_show_stat_be_web",
            "http_show_stat_be_web_typed",
            "http_show_stat_be_web_json",
        ),
        (
            "li_web",
            "http_show_stat_li_web",
            "http_show_stat_li_web_typed",
            "http_show_stat_li_web_json",
        ),
        (
            "li_down",
            "http_show_stat_li_down",
            "http_show_stat_li_down_typed",
            "http_show_stat_li_down_json",
        ),
    ] {
        let f = StatFilter {
            proxy: ProxyFilter::Name(px.into()),
            ..StatFilter::default()
        };
        check(csv, &stat(&f, FormatKind::Csv, &stats), norm_csv_http);
        check(typed, &stat(&f, FormatKind::Typed, &stats), |s| {
            norm_typed(s, HTTP_VOLATILE)
        });
        check(json, &stat(&f, FormatKind::Json, &stats), |s| {
            norm_json(s, HTTP_VOLATILE)
        });
    }
}
