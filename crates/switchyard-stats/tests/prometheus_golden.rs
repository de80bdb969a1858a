//! The HTTP families of the exposition against HAProxy 2.6's exporter
//! (tests/golden/haproxy_http_metrics.txt, captured by scripts/capture-haproxy-http-golden.sh
//! after 3 x 200 and 2 x 404 through fe_web -> be_web/web1, one 200 through li_web/w1 and
//! one 503 answered by li_down itself, its server d1 being DOWN).
//!
//! Compared: the family names, their types, the sample lines (labels, their order, values)
//! and the order of the samples. Not compared: the help texts' final period (Switchyard ends
//! every help text with one) and the `prom` frontend of the capture (Switchyard does not
//! list stats-only sections).

use switchyard_api::model::{
    BackendCounters, BackendStats, Counters, FrontendStats, Info, Mode, Proxy, Server, Stats,
};
use switchyard_stats::prometheus::{render, Scope};

const FAMILIES: &[&str] = &[
    "haproxy_frontend_http_requests_rate_max",
    "haproxy_frontend_http_requests_total",
    "haproxy_frontend_http_responses_total",
    "haproxy_backend_http_requests_total",
    "haproxy_backend_http_responses_total",
    "haproxy_server_http_responses_total",
];

fn golden() -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/haproxy_http_metrics.txt"
    );
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The lines of one family: HELP (without a final period), TYPE, samples.
fn family(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let l = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .unwrap_or(l);
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| !l.contains("proxy=\"prom\""))
        .map(|l| {
            if l.starts_with("# HELP ") {
                l.trim_end_matches('.').to_string()
            } else {
                l.to_string()
            }
        })
        .collect()
}

fn proxy(name: &str, iid: u32, fe: Option<FrontendStats>, be: Option<BackendStats>) -> Proxy {
    Proxy {
        name: name.into(),
        iid,
        forced_id: false,
        mode: Mode::Http,
        frontend: fe,
        backend: be,
    }
}

fn frontend(req_rate_max: u32, req_tot: u64, hrsp: [u64; 6]) -> FrontendStats {
    FrontendStats {
        counters: Counters {
            hrsp,
            ..Counters::default()
        },
        req_rate_max,
        req_tot,
        ..FrontendStats::default()
    }
}

fn counters(req_tot: u64, hrsp: [u64; 6]) -> BackendCounters {
    BackendCounters {
        counters: Counters {
            hrsp,
            ..Counters::default()
        },
        req_tot,
        ..BackendCounters::default()
    }
}

fn backend(req_tot: u64, hrsp: [u64; 6], servers: Vec<Server>) -> BackendStats {
    BackendStats {
        counters: counters(req_tot, hrsp),
        servers,
        ..BackendStats::default()
    }
}

fn server(name: &str, req_tot: u64, hrsp: [u64; 6]) -> Server {
    Server {
        name: name.into(),
        id: 1,
        counters: counters(req_tot, hrsp),
        ..Server::default()
    }
}

fn reference() -> Stats {
    let ok_404 = [0, 3, 0, 2, 0, 0];
    let ok = [0, 1, 0, 0, 0, 0];
    let unavailable = [0, 0, 0, 0, 1, 0];
    Stats {
        proxies: vec![
            proxy("fe_web", 2, Some(frontend(2, 5, ok_404)), None),
            proxy(
                "be_web",
                3,
                None,
                Some(backend(5, ok_404, vec![server("web1", 5, ok_404)])),
            ),
            proxy(
                "li_web",
                4,
                Some(frontend(1, 1, ok)),
                Some(backend(1, ok, vec![server("w1", 1, ok)])),
            ),
            proxy(
                "li_down",
                5,
                Some(frontend(1, 1, unavailable)),
                Some(backend(1, unavailable, vec![server("d1", 0, [0; 6])])),
            ),
        ],
    }
}

#[test]
fn http_families_match_haproxy() {
    let theirs = golden();
    let ours = render(&reference(), &Info::default(), Scope::ALL);
    for name in FAMILIES {
        let expected = family(&theirs, name);
        assert!(expected.len() > 2, "{name} missing from the capture");
        assert_eq!(family(&ours, name), expected, "{name}");
    }
}

/// A TCP proxy with the same counters gets none of these families.
#[test]
fn tcp_proxies_have_no_http_families() {
    let mut stats = reference();
    for p in &mut stats.proxies {
        p.mode = Mode::Tcp;
    }
    let text = render(&stats, &Info::default(), Scope::ALL);
    for name in FAMILIES {
        assert!(family(&text, name).is_empty(), "{name}:\n{text}");
    }
    assert!(text.contains("haproxy_frontend_sessions_total{proxy=\"fe_web\"}"));
}

/// The connection-pool families against the same capture, with the model holding what
/// HAProxy's `show servers conn` said of each server then: `w1` keeps the connection of its
/// one request idle, unsafe (one exchange only), and needs one; `d1`'s checks made the need
/// one; `be_web`'s pool had been purged and its need had decayed.
#[test]
fn connection_pool_families_match_haproxy() {
    let mut stats = reference();
    for p in &mut stats.proxies {
        for s in p.backend.iter_mut().flat_map(|b| b.servers.iter_mut()) {
            match s.name.as_str() {
                "w1" => {
                    s.idle_conns = 1;
                    s.unsafe_conns = 1;
                    s.need_conn_est = 1;
                }
                "d1" => s.need_conn_est = 1,
                _ => {}
            }
        }
    }
    let theirs = golden();
    let ours = render(&stats, &Info::default(), Scope::ALL);
    for name in [
        "haproxy_server_idle_connections_current",
        "haproxy_server_unsafe_idle_connections_current",
        "haproxy_server_safe_idle_connections_current",
        "haproxy_server_used_connections_current",
        "haproxy_server_need_connections_current",
    ] {
        let expected = family(&theirs, name);
        assert!(expected.len() > 2, "{name} missing from the capture");
        assert_eq!(family(&ours, name), expected, "{name}");
    }
}
