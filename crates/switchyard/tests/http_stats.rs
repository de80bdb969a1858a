//! The HTTP counters of `mode http` proxies through the real binary, as HAProxy 2.6 shows
//! them: `show stat` (CSV and JSON) `mode`, `req_rate`/`req_rate_max`/`req_tot` and
//! `hrsp_*`, the exporter's `http_requests_*`/`http_responses_total` families, `clear
//! counters`, and a TCP proxy next to them that keeps printing none of these.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_testkit::{cli, free_port, greeter, greeting_through, require_command, Switchyard};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A keep-alive HTTP/1.1 server on a free loopback port: `200 hello` on `/`, `404` elsewhere.
fn web_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

fn serve(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim_end().is_empty() {
                break;
            }
        }
        let (status, body) = if path == "/" {
            ("200 OK", "hello\n")
        } else {
            ("404 Not Found", "not found\n")
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// HTTP status codes of curl's requests, one per URL (curl keeps one connection for them).
fn curl_codes(urls: &[String]) -> Vec<String> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
    ]);
    for (i, url) in urls.iter().enumerate() {
        if i > 0 {
            cmd.args(["-o", "/dev/null"]);
        }
        cmd.arg(url);
    }
    let out = cmd
        .output()
        .expect("curl must be installed (scripts/ensure-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn curl_body(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `show stat` CSV rows by `pxname/svname`.
fn rows(csv: &str) -> HashMap<String, HashMap<String, String>> {
    switchyard_testkit::stat_rows(csv)
        .into_iter()
        .map(|row| (format!("{}/{}", row["pxname"], row["svname"]), row))
        .collect()
}

/// The value of one series in a Prometheus exposition.
fn metric(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map(|l| l[series.len() + 1..].to_string())
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const HRSP: [&str; 6] = [
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
];

fn assert_hrsp(rows: &HashMap<String, HashMap<String, String>>, key: &str, expected: [&str; 6]) {
    let row = &rows[key];
    for (name, v) in HRSP.iter().zip(expected) {
        assert_eq!(row[*name], v, "{key} {name}");
    }
}

#[test]
fn http_counters_in_show_stat_and_metrics() {
    let (cli_port, stats, front, down, tcp) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let web = web_server();
    let dead = free_port();
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{cli_port} level admin\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         listen stats\n    bind 127.0.0.1:{stats}\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         frontend fe_web\n    bind 127.0.0.1:{front}\n    default_backend be_web\n\
         backend be_web\n    server web1 127.0.0.1:{web}\n\
         listen li_down\n    bind 127.0.0.1:{down}\n    server d1 127.0.0.1:{dead} check inter 200ms\n\
         listen li_tcp\n    mode tcp\n    bind 127.0.0.1:{tcp}\n    server t1 127.0.0.1:{}\n",
        greeter("t1")
    );
    let _sy = Switchyard::start_with(
        BIN,
        &config,
        &[],
        Some(&[cli_port, stats, front, down, tcp]),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    wait_until("d1 to go DOWN", Duration::from_secs(10), || {
        rows(&cli(cli_port, "show stat"))["li_down/d1"]["status"] == "DOWN"
    });

    let root = format!("http://127.0.0.1:{front}/");
    let missing = format!("http://127.0.0.1:{front}/missing");
    let codes = curl_codes(&[root.clone(), root.clone(), missing.clone(), root, missing]);
    assert_eq!(codes, ["200", "200", "404", "200", "404"]);
    // Answered by Switchyard itself: no server is up.
    assert_eq!(curl_codes(&[format!("http://127.0.0.1:{down}/")]), ["503"]);
    assert_eq!(greeting_through(tcp), "t1");

    let csv = cli(cli_port, "show stat");
    let r = rows(&csv);
    for key in [
        "fe_web/FRONTEND",
        "be_web/web1",
        "be_web/BACKEND",
        "li_down/d1",
    ] {
        assert_eq!(r[key]["mode"], "http", "{key}");
    }
    let fe = &r["fe_web/FRONTEND"];
    assert_eq!(fe["req_tot"], "5");
    let rate: u32 = fe["req_rate"].parse().unwrap();
    let rate_max: u32 = fe["req_rate_max"].parse().unwrap();
    // The five requests fell within one or two seconds, a moment ago.
    assert!((1..=5).contains(&rate), "req_rate {rate}");
    assert!((3..=5).contains(&rate_max), "req_rate_max {rate_max}");
    assert_hrsp(&r, "fe_web/FRONTEND", ["0", "3", "0", "2", "0", "0"]);
    assert_hrsp(&r, "be_web/BACKEND", ["0", "3", "0", "2", "0", "0"]);
    assert_hrsp(&r, "be_web/web1", ["0", "3", "0", "2", "0", "0"]);
    assert_eq!(r["be_web/BACKEND"]["req_tot"], "5");
    assert_eq!(r["be_web/web1"]["req_tot"], "5");
    assert_eq!(r["be_web/web1"]["req_rate"], "");
    // The 503 counts in the frontend and the backend, not in the server that was not asked.
    assert_hrsp(&r, "li_down/FRONTEND", ["0", "0", "0", "0", "1", "0"]);
    assert_hrsp(&r, "li_down/BACKEND", ["0", "0", "0", "0", "1", "0"]);
    assert_hrsp(&r, "li_down/d1", ["0", "0", "0", "0", "0", "0"]);
    assert_eq!(r["li_down/FRONTEND"]["req_tot"], "1");
    assert_eq!(r["li_down/BACKEND"]["req_tot"], "1");
    assert_eq!(r["li_down/d1"]["req_tot"], "0");
    // TCP: what it printed before HTTP counters existed.
    for key in ["li_tcp/FRONTEND", "li_tcp/t1", "li_tcp/BACKEND"] {
        assert_eq!(r[key]["mode"], "tcp", "{key}");
        assert_hrsp(&r, key, [""; 6]);
    }
    assert_eq!(r["li_tcp/FRONTEND"]["req_tot"], "0");
    assert_eq!(r["li_tcp/BACKEND"]["req_tot"], "");
    assert_eq!(r["li_tcp/FRONTEND"]["intercepted"], "");

    // JSON: the same values, typed as HAProxy types them.
    let json: serde_json::Value =
        serde_json::from_str(&cli(cli_port, "show stat fe_web -1 -1 json")).unwrap();
    let field = |name: &str| {
        json[0]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))["value"]
            .clone()
    };
    assert_eq!(
        field("req_tot"),
        serde_json::json!({"type": "u64", "value": 5})
    );
    assert_eq!(
        field("hrsp_4xx"),
        serde_json::json!({"type": "u64", "value": 2})
    );
    assert_eq!(
        field("mode"),
        serde_json::json!({"type": "str", "value": "http"})
    );

    let metrics = curl_body(&format!("http://127.0.0.1:{stats}/metrics"));
    for (series, value) in [
        (
            "haproxy_frontend_http_requests_total{proxy=\"fe_web\"}",
            "5",
        ),
        (
            "haproxy_frontend_http_requests_rate_max{proxy=\"fe_web\"}",
            &rate_max.to_string(),
        ),
        (
            "haproxy_frontend_http_responses_total{proxy=\"fe_web\",code=\"2xx\"}",
            "3",
        ),
        (
            "haproxy_frontend_http_responses_total{proxy=\"fe_web\",code=\"4xx\"}",
            "2",
        ),
        ("haproxy_backend_http_requests_total{proxy=\"be_web\"}", "5"),
        (
            "haproxy_backend_http_responses_total{proxy=\"be_web\",code=\"4xx\"}",
            "2",
        ),
        (
            "haproxy_backend_http_responses_total{proxy=\"li_down\",code=\"5xx\"}",
            "1",
        ),
        (
            "haproxy_server_http_responses_total{proxy=\"be_web\",server=\"web1\",code=\"2xx\"}",
            "3",
        ),
        (
            "haproxy_server_http_responses_total{proxy=\"li_down\",server=\"d1\",code=\"5xx\"}",
            "0",
        ),
    ] {
        assert_eq!(
            metric(&metrics, series).as_deref(),
            Some(value),
            "{series}\n{metrics}"
        );
    }
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains("_http_") && l.contains("proxy=\"li_tcp\"")),
        "{metrics}"
    );
    if require_command("promtool", "prometheus") {
        let (passed, said) = switchyard_testkit::promtool_check(&metrics);
        assert!(passed && said.trim().is_empty(), "promtool: {said}");
    }

    // `clear counters` zeroes the request rate's maximum; `all` the counts as well.
    cli(cli_port, "clear counters");
    let r = rows(&cli(cli_port, "show stat"));
    assert_eq!(r["fe_web/FRONTEND"]["req_rate_max"], "0");
    assert_eq!(r["fe_web/FRONTEND"]["req_tot"], "5");
    cli(cli_port, "clear counters all");
    let r = rows(&cli(cli_port, "show stat"));
    assert_eq!(r["fe_web/FRONTEND"]["req_tot"], "0");
    assert_eq!(r["be_web/web1"]["req_tot"], "0");
    assert_hrsp(&r, "fe_web/FRONTEND", ["0"; 6]);
    assert_hrsp(&r, "be_web/BACKEND", ["0"; 6]);
    assert_hrsp(&r, "be_web/web1", ["0"; 6]);
}
