//! The stats page, its exports and the Prometheus exporter through the real binary, over
//! plain HTTP/1.1 (a tiny std client, so what is tested is what curl or a browser gets):
//! every output, authentication, admin rights, admin actions seen by the Runtime API,
//! `promtool check metrics`, and the page itself in headless Chromium (DevTools protocol):
//! live values, sorting, an admin action, phone width, screenshots.
//!
//! promtool (Debian package `prometheus`) and Chromium (`chromium`) come from
//! `scripts/ensure-deps.sh`; without them those two tests print why and pass, except in CI
//! (`CI` set), where they fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    cli, free_port, greeter, greeting_through, have_command, require_command, stat_rows,
    tool_missing, ChildGuard, Switchyard, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client.

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connecting to the stats page on {port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    // Until the end of the headers, then Content-Length bytes (some servers, Chromium's
    // DevTools endpoint among them, keep the connection open despite `Connection: close`).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut expected = None;
    loop {
        if expected.is_none() {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let no_body = method == "HEAD" || head.starts_with("http/1.1 304");
                expected = Some(
                    end + 4
                        + if no_body {
                            0
                        } else {
                            length.unwrap_or(usize::MAX)
                        },
                );
            }
        }
        if expected.is_some_and(|e| raw.len() >= e) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading the answer to {method} {target}: {e}"),
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(port: u16, target: &str, auth: Option<&str>) -> Reply {
    let header;
    let mut headers = Vec::new();
    if let Some(credentials) = auth {
        header = format!("Basic {}", base64_encode(credentials.as_bytes()));
        headers.push(("Authorization", header.as_str()));
    }
    request(port, "GET", target, &headers, "")
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let v = B64.iter().position(|b| *b == c).expect("base64 character") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The balancer under test.

struct Ports {
    cli: u16,
    stats: u16,
    readonly: u16,
    front: u16,
}

fn config(p: &Ports, s1: u16, s2: u16) -> String {
    format!(
        "global\n    stats socket ipv4@127.0.0.1:{cli} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         listen stats\n    bind 127.0.0.1:{stats}\n    mode http\n    stats enable\n    stats uri /stats\n\
         \x20   stats realm Switchyard\\ Test\n    stats auth admin:s3cret\n    stats auth viewer:look\n\
         \x20   stats refresh 1s\n    stats admin if TRUE\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         frontend stats_ro\n    bind 127.0.0.1:{readonly}\n    mode http\n    stats uri /\n    stats hide-version\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         backend be\n    balance roundrobin\n    server s1 127.0.0.1:{s1} check inter 300ms\n    server s2 127.0.0.1:{s2}\n",
        cli = p.cli,
        stats = p.stats,
        readonly = p.readonly,
        front = p.front,
    )
}

fn start() -> (Switchyard, Ports) {
    let ports = Ports {
        cli: free_port(),
        stats: free_port(),
        readonly: free_port(),
        front: free_port(),
    };
    let (s1, s2) = (greeter("s1"), greeter("s2"));
    let sy = Switchyard::start_with(
        BIN,
        &config(&ports, s1, s2),
        &[],
        Some(&[ports.cli, ports.stats, ports.readonly, ports.front]),
    )
    .unwrap();
    (sy, ports)
}

const ADMIN: Option<&str> = Some("admin:s3cret");

fn cell(csv: &str, proxy: &str, server: &str, column: &str) -> String {
    stat_rows(csv)
        .into_iter()
        .find(|r| r["pxname"] == proxy && r["svname"] == server)
        .unwrap_or_else(|| panic!("no row {proxy}/{server} in\n{csv}"))[column]
        .clone()
}

/// The value of one series in a Prometheus exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len() + 1..].parse().ok())
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The admin state column of `show servers state` for one server.
fn admin_state(cli_port: u16, server: &str) -> String {
    cli(cli_port, "show servers state be")
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 6 && f[3] == server)
        .map(|f| f[6].to_string())
        .unwrap_or_else(|| panic!("no server {server} in show servers state"))
}

// ---------------------------------------------------------------------------------------

#[test]
fn every_output_matches_the_runtime_api_and_follows_traffic() {
    let (_sy, p) = start();
    wait_until("s1's first check", Duration::from_secs(10), || {
        cell(&cli(p.cli, "show stat"), "be", "s1", "check_status") == "L4OK"
    });
    // The page: one self-contained HTML document naming every proxy and server.
    let page = get(p.stats, "/stats", ADMIN);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for name in [
        "\"fe\"", "\"be\"", "\"s1\"", "\"s2\"", "FRONTEND", "BACKEND",
    ] {
        assert!(page.body.contains(name), "{name} missing from the page");
    }
    // Stats-only sections are the page's, not TCP proxies of the engine.
    assert!(
        !page.body.contains("\"stats_ro\""),
        "stats proxies are not listed"
    );
    assert!(!page.body.contains("src=\"http") && !page.body.contains("href=\"http"));
    assert!(page.body.contains(env!("CARGO_PKG_VERSION")));

    // ;csv is `show stat`, byte for byte apart from what moves with time.
    let csv = get(p.stats, "/stats;csv", ADMIN);
    assert_eq!(csv.status, 200);
    assert!(csv
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let shown = cli(p.cli, "show stat");
    let volatile = [
        "lastchg",
        "check_duration",
        "last_chk",
        "lastsess",
        // Per-second rates decay between the two reads.
        "rate",
        "conn_rate",
        "downtime",
        "chkfail",
    ];
    let (http_rows, cli_rows) = (stat_rows(&csv.body), stat_rows(&shown));
    assert_eq!(csv.body.lines().next(), shown.lines().next(), "same header");
    assert_eq!(http_rows.len(), cli_rows.len());
    for (a, b) in http_rows.iter().zip(&cli_rows) {
        for (k, v) in a {
            if !volatile.contains(&k.as_str()) {
                assert_eq!(v, &b[k], "column {k} of {}/{}", a["pxname"], a["svname"]);
            }
        }
    }
    let norefresh = get(p.stats, "/stats;csv;norefresh", ADMIN);
    assert_eq!(norefresh.status, 200);
    assert!(norefresh.body.starts_with("# pxname,svname,"));

    // ;json is `show stat json`; ;typed and ;info as on the socket.
    let json = get(p.stats, "/stats;json", ADMIN);
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let rows: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let field = |n: &str| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["field"]["name"] == n)
                    .map(|f| f["value"]["value"].as_str().unwrap().to_string())
                    .unwrap()
            };
            format!("{}/{}", field("pxname"), field("svname"))
        })
        .collect();
    assert_eq!(names, ["fe/FRONTEND", "be/s1", "be/s2", "be/BACKEND"]);
    assert!(get(p.stats, "/stats;typed", ADMIN)
        .body
        .contains(".svname.1:KNS:str:s1\n"));
    let info = get(p.stats, "/stats;info", ADMIN).body;
    assert!(info.contains("Name: Switchyard\n"), "{info}");
    let info_json: serde_json::Value =
        serde_json::from_str(&get(p.stats, "/stats;info;json", ADMIN).body).unwrap();
    assert!(info_json.is_array());

    // ;up leaves out servers that are down: s2 is fine, take it to maintenance.
    assert_eq!(cli(p.cli, "set server be/s2 state maint"), "\n");
    let up = get(p.stats, "/stats;up;csv", ADMIN).body;
    assert!(!up.contains("be,s2,"), "{up}");
    assert!(up.contains("be,s1,"));
    assert!(get(p.stats, "/stats;no-maint;csv", ADMIN)
        .body
        .contains("be,s1,"));
    assert_eq!(cli(p.cli, "set server be/s2 state ready"), "\n");

    // The page's own JSON.
    let data: serde_json::Value =
        serde_json::from_str(&get(p.stats, "/stats;data", ADMIN).body).unwrap();
    assert_eq!(data["admin"], true);
    assert_eq!(data["refresh"], 1000);
    assert_eq!(data["fields"][0], "pxname");
    assert_eq!(data["rows"].as_array().unwrap().len(), 4);

    // Metrics, without the page's credentials (as HAProxy's exporter).
    let metrics = get(p.stats, "/metrics", None);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    for family in [
        "haproxy_process_uptime_seconds",
        "haproxy_process_build_info",
        "haproxy_frontend_current_sessions",
        "haproxy_frontend_bytes_in_total",
        "haproxy_backend_up",
        "haproxy_backend_status",
        "haproxy_backend_active_servers",
        "haproxy_server_status",
        "haproxy_server_current_sessions",
        "haproxy_server_sessions_total",
        "haproxy_server_bytes_in_total",
        "haproxy_server_bytes_out_total",
        "haproxy_server_connection_errors_total",
        "haproxy_server_retry_warnings_total",
        "haproxy_server_redispatch_warnings_total",
        "haproxy_server_check_failures_total",
        "haproxy_server_downtime_seconds_total",
        "haproxy_server_weight",
        "haproxy_server_check_status",
    ] {
        assert!(
            metrics.body.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{}",
            metrics.body
        );
    }
    let m = &metrics.body;
    assert_eq!(metric(m, "haproxy_backend_up{proxy=\"be\"}"), Some(1.0));
    assert_eq!(
        metric(m, "haproxy_backend_active_servers{proxy=\"be\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(
            m,
            "haproxy_server_status{proxy=\"be\",server=\"s1\",state=\"UP\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            m,
            "haproxy_server_check_status{proxy=\"be\",server=\"s1\",state=\"L4OK\"}"
        ),
        Some(1.0)
    );
    assert!(
        !m.contains("proxy=\"stats\""),
        "the stats proxy is not a proxy"
    );
    assert_eq!(get(p.stats, "/metrics?scope=bogus", None).status, 400);
    let servers_only = get(p.stats, "/metrics?scope=server", None).body;
    assert!(servers_only.contains("haproxy_server_") && !servers_only.contains("haproxy_process_"));

    // Traffic moves every output: ipvsadm-style connections and bytes per server.
    let before_csv = get(p.stats, "/stats;csv", ADMIN).body;
    let stot = |csv: &str, s: &str| cell(csv, "be", s, "stot").parse::<u64>().unwrap();
    let bout = |csv: &str, s: &str| cell(csv, "be", s, "bout").parse::<u64>().unwrap();
    for _ in 0..6 {
        let said = greeting_through(p.front);
        assert!(said == "s1" || said == "s2", "{said}");
    }
    let mut after_csv = String::new();
    // Sessions count when they start and their bytes as they pass: wait for all six to end.
    wait_until(
        "counters to include six ended sessions",
        Duration::from_secs(5),
        || {
            after_csv = get(p.stats, "/stats;csv", ADMIN).body;
            stot(&after_csv, "s1") + stot(&after_csv, "s2")
                == stot(&before_csv, "s1") + stot(&before_csv, "s2") + 6
                && ["s1", "s2"]
                    .iter()
                    .all(|s| cell(&after_csv, "be", s, "scur") == "0")
        },
    );
    assert_eq!(stot(&after_csv, "s1"), stot(&before_csv, "s1") + 3);
    // Each greeting is "sN\n": 3 bytes per session towards the client.
    assert_eq!(bout(&after_csv, "s1"), bout(&before_csv, "s1") + 9);
    let m2 = get(p.stats, "/metrics", None).body;
    assert_eq!(
        metric(
            &m2,
            "haproxy_server_sessions_total{proxy=\"be\",server=\"s1\"}"
        ),
        Some(stot(&after_csv, "s1") as f64)
    );
    assert_eq!(
        metric(
            &m2,
            "haproxy_server_bytes_out_total{proxy=\"be\",server=\"s2\"}"
        ),
        Some(bout(&after_csv, "s2") as f64)
    );
    assert!(
        metric(&m2, "haproxy_frontend_sessions_total{proxy=\"fe\"}").unwrap()
            >= metric(m, "haproxy_frontend_sessions_total{proxy=\"fe\"}").unwrap() + 6.0
    );
    let data: serde_json::Value =
        serde_json::from_str(&get(p.stats, "/stats;data", ADMIN).body).unwrap();
    let fields = data["fields"].as_array().unwrap();
    let col = |n: &str| fields.iter().position(|f| f == n).unwrap();
    let s1 = data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[col("svname")] == "s1")
        .unwrap();
    assert_eq!(s1[col("stot")].as_u64(), Some(stot(&after_csv, "s1")));

    // HEAD: headers only. Other paths and methods.
    let head = request(
        p.stats,
        "HEAD",
        "/stats;csv",
        &[(
            "Authorization",
            &format!("Basic {}", base64_encode(b"admin:s3cret")),
        )],
        "",
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(get(p.stats, "/elsewhere", ADMIN).status, 404);
    let put = request(p.stats, "PUT", "/stats", &[], "");
    assert_eq!(put.status, 401, "authentication comes first");
    let auth = format!("Basic {}", base64_encode(b"admin:s3cret"));
    let put = request(p.stats, "PUT", "/stats", &[("Authorization", &auth)], "x");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST"));
    // Garbage does not hurt.
    let raw = {
        let mut s = TcpStream::connect(("127.0.0.1", p.stats)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"\x00\xffGARBAGE \r\n\r\n").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert_eq!(
        get(p.stats, "/stats;csv", ADMIN).status,
        200,
        "still serving"
    );
}

#[test]
fn authentication_and_admin_rights() {
    let (_sy, p) = start();

    // No credentials, wrong ones, a malformed header: 401 with the realm.
    let none = get(p.stats, "/stats", None);
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"Switchyard Test\"")
    );
    assert!(
        !none.body.contains("\"be\""),
        "nothing leaks before authentication"
    );
    assert_eq!(get(p.stats, "/stats;csv", Some("admin:wrong")).status, 401);
    assert_eq!(
        get(p.stats, "/stats;csv", Some("nobody:s3cret")).status,
        401
    );
    assert_eq!(get(p.stats, "/stats;json", Some("admin")).status, 401);
    assert_eq!(
        request(
            p.stats,
            "GET",
            "/stats",
            &[("Authorization", "Basic %%%")],
            ""
        )
        .status,
        401
    );
    // Either user is fine.
    assert_eq!(get(p.stats, "/stats;csv", Some("viewer:look")).status, 200);
    assert_eq!(get(p.stats, "/stats", ADMIN).status, 200);

    // A page without `stats auth` needs none; without `stats admin` refuses admin actions.
    let ro = get(p.readonly, "/", None);
    assert_eq!(ro.status, 200);
    assert!(ro.body.contains("\"admin\":false"));
    assert!(
        !ro.body.contains(env!("CARGO_PKG_VERSION")),
        "stats hide-version"
    );
    assert!(get(p.readonly, "/;info", None).body.contains("Version: \n"));
    let refused = request(
        p.readonly,
        "POST",
        "/",
        &[("Accept", "application/json")],
        "b=be&s=s1&action=maint",
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(admin_state(p.cli, "s1"), "0", "nothing changed");
    // The admin page refuses anonymous POSTs before anything else.
    let anonymous = request(p.stats, "POST", "/stats", &[], "b=be&s=s1&action=maint");
    assert_eq!(anonymous.status, 401);
    assert_eq!(admin_state(p.cli, "s1"), "0");

    let auth = format!("Basic {}", base64_encode(b"admin:s3cret"));
    let json_admin = |body: &str| {
        request(
            p.stats,
            "POST",
            "/stats",
            &[("Authorization", &auth), ("Accept", "application/json")],
            body,
        )
    };
    // HAProxy's form, with the backend by id as its page sends it.
    let iid = cell(&cli(p.cli, "show stat"), "be", "BACKEND", "iid");
    let drained = json_admin(&format!("s=s1&action=drain&b=%23{iid}"));
    assert_eq!(drained.status, 200, "{drained:?}");
    let answer: serde_json::Value = serde_json::from_str(&drained.body).unwrap();
    assert_eq!(answer["status"], "DONE");
    assert_eq!(
        answer["results"][0]["command"],
        "set server be/s1 state drain"
    );
    assert_eq!(admin_state(p.cli, "s1"), "8", "FDRAIN, as set from the CLI");
    assert!(cell(
        &get(p.stats, "/stats;csv", ADMIN).body,
        "be",
        "s1",
        "status"
    )
    .starts_with("DRAIN"));

    // Several servers at once; the weight extension; the CLI's own error messages.
    let both = json_admin("b=be&s=s1&s=s2&action=maint");
    let answer: serde_json::Value = serde_json::from_str(&both.body).unwrap();
    assert_eq!(answer["status"], "DONE", "{answer}");
    assert_eq!(
        (admin_state(p.cli, "s1"), admin_state(p.cli, "s2")),
        ("1".into(), "1".into())
    );
    let ready = json_admin("b=be&s=s1&s=s2&action=ready");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ready.body).unwrap()["status"],
        "DONE"
    );
    let weight = json_admin("b=be&s=s2&action=weight&w=7");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&weight.body).unwrap()["status"],
        "DONE"
    );
    assert_eq!(cli(p.cli, "get weight be/s2"), "7 (initial 1)\n\n");
    let partial = json_admin("b=be&s=s1&s=ghost&action=drain");
    let answer: serde_json::Value = serde_json::from_str(&partial.body).unwrap();
    assert_eq!(answer["status"], "PART");
    assert_eq!(answer["results"][1]["answer"], "No such server.");
    let too_heavy = json_admin("b=be&s=s1&action=weight&w=999");
    let answer: serde_json::Value = serde_json::from_str(&too_heavy.body).unwrap();
    assert_eq!(answer["status"], "NONE");
    assert!(!answer["results"][0]["answer"].as_str().unwrap().is_empty());
    let no_backend = json_admin("b=%23999&s=s1&action=ready");
    let answer: serde_json::Value = serde_json::from_str(&no_backend.body).unwrap();
    assert_eq!(answer["status"], "NONE");
    assert_eq!(answer["results"][0]["answer"], "No such backend.");

    // Malformed forms are 400 and change nothing, whatever they try to smuggle.
    for bad in [
        "b=be&s=s1%3Bset+server+be%2Fs2+state+maint&action=ready",
        "b=be&s=s1+state+maint&action=ready",
        "b=be&s=s1&action=reload",
        "b=be&s=s1&action=%ZZ",
        "b=be&action=ready",
        "",
    ] {
        let reply = json_admin(bad);
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
    assert_eq!(admin_state(p.cli, "s2"), "0");
    let huge = json_admin(&format!(
        "b=be&s=s1&action=ready&x={}",
        "a".repeat(64 * 1024)
    ));
    assert_eq!(huge.status, 413);

    // A browser on another site cannot drive the operator's credentials.
    let csrf = request(
        p.stats,
        "POST",
        "/stats",
        &[("Authorization", &auth), ("Origin", "http://evil.example")],
        "b=be&s=s1&action=maint",
    );
    assert_eq!(csrf.status, 403);
    assert_eq!(
        admin_state(p.cli, "s1"),
        "8",
        "still draining, not in maintenance"
    );

    // HAProxy's own page posts a form and follows a redirect to `;st=`.
    let form = request(
        p.stats,
        "POST",
        "/stats",
        &[("Authorization", &auth)],
        "s=s1&action=ready&b=be",
    );
    assert_eq!(form.status, 303);
    assert_eq!(form.header("location"), Some("/stats;st=DONE"));
    assert_eq!(admin_state(p.cli, "s1"), "0");
    let after = get(p.stats, "/stats;st=DONE", ADMIN);
    assert!(after.body.contains("\"status\":\"DONE\""));
}

#[test]
fn metrics_pass_promtool() {
    if !require_command("promtool", "prometheus") {
        return;
    }
    let (_sy, p) = start();
    wait_until("s1's first check", Duration::from_secs(10), || {
        cell(&cli(p.cli, "show stat"), "be", "s1", "check_status") == "L4OK"
    });
    for _ in 0..3 {
        greeting_through(p.front);
    }
    assert_eq!(cli(p.cli, "set server be/s2 state drain"), "\n");
    let body = get(p.stats, "/metrics", None).body;
    let (passed, said) = switchyard_testkit::promtool_check(&body);
    assert!(passed, "promtool: {said}\n{body}");
    assert!(said.trim().is_empty(), "promtool lint findings: {said}");
    let families = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let samples = body.lines().filter(|l| !l.starts_with('#')).count();
    eprintln!("promtool check metrics: OK ({families} families, {samples} samples)");
}

// ---------------------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol (a tiny WebSocket client).

struct DevTools {
    socket: TcpStream,
    next_id: u64,
}

impl DevTools {
    fn connect(port: u16, path: &str) -> DevTools {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // No Origin header: Chromium only checks origins of connections that send one.
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c3dpdGNoeWFyZC10ZXN0cw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.write_all(handshake.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            socket.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "websocket handshake: {head}"
        );
        DevTools { socket, next_id: 1 }
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        let mask = [0x5a, 0x17, 0xc3, 0x2e];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.socket.write_all(&frame).unwrap();
    }

    /// The next complete text message (control frames handled on the way).
    fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.socket.read_exact(&mut head).unwrap();
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let mut len = (head[1] & 0x7f) as u64;
            if len == 126 {
                let mut b = [0u8; 2];
                self.socket.read_exact(&mut b).unwrap();
                len = u16::from_be_bytes(b) as u64;
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.socket.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.socket.read_exact(&mut payload).unwrap();
            match opcode {
                0x9 => self.send_frame(0xA, &payload),
                0x8 => panic!("DevTools closed the connection"),
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).unwrap();
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs a DevTools command and returns its `result` (events in between are skipped).
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::json!({ "id": id, "method": method, "params": params });
        self.send_frame(0x1, request.to_string().as_bytes());
        loop {
            let reply: serde_json::Value = serde_json::from_str(&self.read_message()).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page (promises awaited) and returns its value.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression);
            if !(value.is_null() || value == false || value == "") {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({expression})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&mut self, path: &PathBuf) {
        let shot = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": false }),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG image");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| have_command(c))
}

/// Where screenshots go: `$SWITCHYARD_ARTIFACTS`, else `target/artifacts` of the target
/// directory in use.
fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHYARD_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("artifacts")
}

#[test]
fn the_page_lives_in_a_browser() {
    let Some(browser) = chromium() else {
        tool_missing(
            "chromium is not installed (Debian package 'chromium'; scripts/ensure-deps.sh \
             installs it)",
        );
        return;
    };
    let (cli_port, stats, front, web) = (free_port(), free_port(), free_port(), free_port());
    let (s1, s2, s3) = (greeter("s1"), greeter("s2"), greeter("s3"));
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{cli_port} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         listen stats\n    bind 127.0.0.1:{stats}\n    mode http\n    stats enable\n    stats uri /\n\
         \x20   stats refresh 1s\n    stats admin if LOCALHOST\n\
         frontend pg_front\n    bind 127.0.0.1:{front}\n    default_backend pg\n\
         backend pg\n    balance roundrobin\n    server primary 127.0.0.1:{s1} check inter 500ms\n\
         \x20   server replica 127.0.0.1:{s2} check inter 500ms\n    server dr 127.0.0.1:{s3} backup\n\
         \x20   server gone 127.0.0.1:1 check inter 500ms\n\
         listen web\n    bind 127.0.0.1:{web}\n    mode http\n    server page 127.0.0.1:{stats}\n"
    );
    let _sy =
        Switchyard::start_with(BIN, &config, &[], Some(&[cli_port, stats, front, web])).unwrap();

    let profile = TempDir::new("switchyard-chromium").unwrap();
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--hide-scrollbars",
        "--remote-debugging-port=0",
        "--window-size=1440,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg("about:blank");
    let mut chrome = ChildGuard::spawn(&mut cmd).unwrap();
    // Chromium writes the port it picked (and the browser's path) to DevToolsActivePort.
    let active = profile.path().join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(60);
    let port: u16 = loop {
        if let Some(port) = std::fs::read_to_string(&active)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            break port;
        }
        assert!(
            chrome.is_running(),
            "chromium exited:\n{}",
            chrome.output_so_far()
        );
        assert!(
            Instant::now() < deadline,
            "chromium did not start:\n{}",
            chrome.output_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let targets: serde_json::Value =
        serde_json::from_str(&request(port, "GET", "/json/list", &[], "").body).unwrap();
    let page_ws = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_string();
    let path = page_ws
        .split_once(&format!("127.0.0.1:{port}"))
        .or_else(|| page_ws.split_once(&format!("localhost:{port}")))
        .map(|(_, p)| p.to_string())
        .unwrap();
    let mut dt = DevTools::connect(port, &path);
    dt.call("Page.enable", serde_json::json!({}));
    dt.call(
        "Page.navigate",
        serde_json::json!({ "url": format!("http://127.0.0.1:{stats}/") }),
    );
    let long = Duration::from_secs(30);
    dt.wait_for(
        "the page to render",
        "document.readyState === 'complete' && !!document.querySelector('tr[data-key=\"pg/primary\"]')",
        long,
    );
    // The page is admin for a loopback client, with every proxy and server in its rows.
    assert_eq!(
        dt.eval("document.querySelectorAll('tr[data-key^=\"pg/\"]').length"),
        5
    );
    assert_eq!(
        dt.eval("!!document.querySelector('tr[data-key=\"pg_front/FRONTEND\"]')"),
        true
    );
    dt.wait_for(
        "checks to report",
        "document.querySelector('tr[data-key=\"pg/gone\"] td[data-col=\"check\"]').textContent.startsWith('L4CON')",
        long,
    );
    dt.wait_for(
        "a DOWN server to be colored as such",
        "document.querySelector('tr[data-key=\"pg/gone\"]').classList.contains('st-down')",
        long,
    );
    let total =
        "document.querySelector('tr[data-key=\"pg/primary\"] td[data-col=\"stot\"]').textContent";
    let before = dt.eval(total);

    // Live: traffic shows up without reloading the page.
    dt.eval("window.__same_page = true");
    let polls: u64 = dt.eval("window.switchyard.polls").as_u64().unwrap();
    for _ in 0..8 {
        greeting_through(front);
    }
    let after = dt.wait_for(
        "the session count to change",
        &format!("(() => {{ const t = {total}; return t !== {before} ? t : null; }})()"),
        long,
    );
    assert_ne!(after, before);
    assert!(dt.eval("window.switchyard.polls").as_u64().unwrap() > polls);
    assert_eq!(
        dt.eval("window.__same_page === true"),
        true,
        "updated in place"
    );
    assert_eq!(
        dt.eval("document.getElementById('live').dataset.state"),
        "live"
    );

    // Sorting: by state, problems first.
    dt.eval("document.querySelector('th[data-col=\"status\"] button').click()");
    let first = dt.eval(
        "document.querySelector('section[data-proxy=\"pg\"] tbody tr[data-type=\"2\"]').dataset.key",
    );
    assert_eq!(first, "pg/gone", "the DOWN server sorts first");
    assert_eq!(
        dt.eval("document.querySelector('th[data-col=\"status\"]').getAttribute('aria-sort')"),
        "ascending"
    );

    // An admin action from the page: drain the primary through its state menu.
    dt.eval(
        "(() => { const s = document.querySelector('tr[data-key=\"pg/primary\"] select[data-role=\"state\"]');\
          s.value = 'drain'; s.dispatchEvent(new Event('change')); })()",
    );
    let message = dt.wait_for(
        "the CLI's answer",
        "(() => { const m = document.querySelector('#notice .msg'); return m ? m.className + ' ' + m.textContent : null; })()",
        long,
    );
    let message = message.as_str().unwrap();
    assert!(
        message.contains("ok") && message.contains("set server pg/primary state drain"),
        "{message}"
    );
    assert_eq!(admin_state_of(cli_port, "pg", "primary"), "8");
    dt.wait_for(
        "the state to show DRAIN",
        "document.querySelector('tr[data-key=\"pg/primary\"] select[data-role=\"state\"]').options[0].textContent.startsWith('DRAIN')",
        long,
    );
    // A weight change, in place.
    dt.eval(
        "(() => { document.querySelector('tr[data-key=\"pg/replica\"] td[data-col=\"weight\"] button').click();\
          const i = document.querySelector('tr[data-key=\"pg/replica\"] td[data-col=\"weight\"] input');\
          i.value = '5'; i.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter' })); })()",
    );
    wait_until("the weight to change", long, || {
        cli(cli_port, "get weight pg/replica") == "5 (initial 1)\n\n"
    });
    dt.wait_for(
        "the new weight on the page",
        "document.querySelector('tr[data-key=\"pg/replica\"] td[data-col=\"weight\"]').textContent.trim() === '5'",
        long,
    );

    // An HTTP proxy's table has request and response columns (the stats page is its
    // server), a TCP proxy's has none.
    for _ in 0..3 {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{web}/"))
            .output()
            .expect("curl");
        assert!(out.status.success());
    }
    dt.wait_for(
        "the HTTP requests on the page",
        "document.querySelector('tr[data-key=\"web/BACKEND\"] td[data-col=\"hrsp_2xx\"]')?.textContent === '3'",
        long,
    );
    assert_eq!(
        dt.eval("document.querySelector('tr[data-key=\"web/FRONTEND\"] td[data-col=\"req_tot\"]').firstChild.textContent"),
        "3"
    );
    assert_eq!(
        dt.eval("document.querySelectorAll('section[data-proxy=\"pg\"] [data-col^=\"hrsp_\"], section[data-proxy=\"pg\"] [data-col=\"req_tot\"]').length"),
        0
    );

    let dir = artifacts_dir();
    dt.screenshot(&dir.join("stats-page.png"));

    // Phone width: the document does not overflow sideways (tables scroll in their box).
    dt.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
    );
    dt.wait_for(
        "the phone layout",
        "window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth + 1",
        long,
    );
    dt.screenshot(&dir.join("stats-page-phone.png"));
    drop(dt);
    chrome.kill();
}

/// The admin state column of `show servers state` for a server of any backend.
fn admin_state_of(cli_port: u16, backend: &str, server: &str) -> String {
    cli(cli_port, &format!("show servers state {backend}"))
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 6 && f[3] == server)
        .map(|f| f[6].to_string())
        .unwrap_or_else(|| panic!("no server {backend}/{server}"))
}

#[test]
fn a_reload_keeps_the_page_serving_the_new_configuration() {
    let (sy, p) = start();
    let s3 = greeter("s3");
    let before = get(p.stats, "/stats;csv", ADMIN).body;
    assert!(!before.contains("be,s3,"));
    // The same stats sections: no warning; one more server: the page shows it at once.
    let (s1, s2) = (
        cell(&before, "be", "s1", "addr"),
        cell(&before, "be", "s2", "addr"),
    );
    let port = |addr: &str| addr.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    let grown = config(&p, port(&s1), port(&s2)) + &format!("    server s3 127.0.0.1:{s3}\n");
    std::fs::write(sy.config_path(), &grown).unwrap();
    let answer = cli(p.cli, "reload");
    assert!(answer.starts_with("Success=1"), "{answer}");
    assert!(!answer.contains("stats page"), "{answer}");
    let after = get(p.stats, "/stats;csv", ADMIN).body;
    assert!(after.contains("be,s3,"), "{after}");
    let metrics = get(p.stats, "/metrics", None).body;
    assert!(metrics.contains("server=\"s3\""));

    // Changed stats settings need a restart: said, and the running page keeps its users.
    let changed = grown.replace("stats auth viewer:look", "stats auth viewer:other");
    std::fs::write(sy.config_path(), &changed).unwrap();
    let answer = cli(p.cli, "reload");
    assert!(answer.starts_with("Success=1"), "{answer}");
    assert!(
        answer.contains("stats page changes") && answer.contains("next restart"),
        "{answer}"
    );
    assert_eq!(get(p.stats, "/stats;csv", Some("viewer:look")).status, 200);
    assert_eq!(get(p.stats, "/stats;csv", Some("viewer:other")).status, 401);
}
