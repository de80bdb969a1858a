//! The JSON the page polls (`<uri>;data`, a Switchyard extension): the `show stat` columns
//! the page shows, in a compact columnar form, plus a few `show info` values.
//!
//! ```json
//! {"info": {"name": "Switchyard", "version": "0.1.0", "pid": 42, "uptime": 12, ...},
//!  "admin": true, "refresh": 5000,
//!  "fields": ["pxname", "svname", "type", ...],
//!  "rows": [["fe", "FRONTEND", 0, ...], ["be", "s1", 2, ...], ...]}
//! ```
//!
//! The values are taken from the `show stat` CSV itself, so the page shows exactly what
//! `;csv` and the stats socket say (states such as `UP 1/3`, `act`/`bck` counts, check
//! statuses are computed in one place). Numbers are JSON numbers, empty columns `null`.
//! `show stat json` (`;json`) holds the same values but repeats field metadata in every
//! cell — about thirty times larger, too heavy to poll from a phone.

use serde_json::{json, Map, Value};
use switchyard_api::format::{self, FormatKind};
use switchyard_api::model::{Info, StatFilter, Stats};

/// The `show stat` columns the page uses, in this order in `fields`.
pub const FIELDS: &[&str] = &[
    "pxname",
    "svname",
    "type",
    "iid",
    "sid",
    "status",
    "weight",
    "uweight",
    "act",
    "bck",
    "check_status",
    "check_code",
    "check_duration",
    "check_desc",
    "last_chk",
    "check_health",
    "check_rise",
    "check_fall",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qcur",
    "qmax",
    "qlimit",
    "scur",
    "smax",
    "slim",
    "rate",
    "rate_max",
    "stot",
    "lbtot",
    "lastsess",
    "bin",
    "bout",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "cli_abrt",
    "srv_abrt",
    "dreq",
    "dresp",
    "addr",
    "mode",
    "algo",
    "tracked",
    "agent_status",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
];

/// What the page may show and do for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Admin controls are shown (the server checks again on every POST).
    pub admin: bool,
    /// `stats hide-version`.
    pub hide_version: bool,
    /// Milliseconds between two polls; 0: the page does not update itself.
    pub refresh_ms: u64,
}

/// The page's JSON document.
pub fn page_data(stats: &Stats, info: &Info, filter: &StatFilter, view: View) -> String {
    let csv = format::show_stat(stats, filter, FormatKind::Csv);
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .map(|h| split_csv(h.trim_start_matches("# ")))
        .unwrap_or_default();
    let columns: Vec<Option<usize>> = FIELDS
        .iter()
        .map(|f| header.iter().position(|h| h == f))
        .collect();
    let rows: Vec<Value> = lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let cells = split_csv(line);
            Value::Array(
                columns
                    .iter()
                    .map(|c| {
                        c.and_then(|i| cells.get(i))
                            .map_or(Value::Null, |v| cell(v))
                    })
                    .collect(),
            )
        })
        .collect();
    let mut info_json = Map::new();
    info_json.insert("name".into(), json!(info.name));
    if !view.hide_version {
        info_json.insert("version".into(), json!(info.version));
    }
    info_json.insert("pid".into(), json!(info.pid));
    info_json.insert("uptime".into(), json!(info.uptime_sec));
    info_json.insert("node".into(), json!(info.node));
    info_json.insert("description".into(), json!(info.description));
    info_json.insert("nbthread".into(), json!(info.nbthread));
    info_json.insert("maxconn".into(), json!(info.maxconn));
    info_json.insert("curr_conns".into(), json!(info.curr_conns));
    info_json.insert("cum_conns".into(), json!(info.cum_conns));
    info_json.insert("stopping".into(), json!(info.stopping));
    let mut text = json!({
        "info": info_json,
        "admin": view.admin,
        "refresh": view.refresh_ms,
        "fields": FIELDS,
        "rows": rows,
    })
    .to_string();
    text.push('\n');
    text
}

/// A CSV cell as JSON: integers as numbers, empty as null, the rest as text.
fn cell(v: &str) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    if v.bytes().all(|b| b.is_ascii_digit())
        || (v.starts_with('-') && v.len() > 1 && v[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        if let Ok(n) = v.parse::<i64>() {
            return json!(n);
        }
        if let Ok(n) = v.parse::<u64>() {
            return json!(n);
        }
    }
    json!(v)
}

/// One CSV line as HAProxy writes it (`csv_enc`: a cell is quoted when it holds a comma,
/// a quote or a line break, quotes doubled inside).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    current.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            '"' if current.is_empty() => quoted = true,
            ',' if !quoted => cells.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    // HAProxy ends every line with a comma: the cell after it is not a column.
    if !current.is_empty() {
        cells.push(current);
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells() {
        assert_eq!(split_csv("a,b,,c,"), ["a", "b", "", "c"]);
        assert_eq!(
            split_csv("\"x,y\",\"say \"\"hi\"\"\",z,"),
            ["x,y", "say \"hi\"", "z"]
        );
        assert_eq!(split_csv(""), Vec::<String>::new());
        // An unterminated quote keeps the rest of the line in the cell.
        assert_eq!(split_csv("\"a,b"), ["a,b"]);
    }

    #[test]
    fn cells_become_numbers() {
        assert_eq!(cell("12"), json!(12));
        assert_eq!(cell("-1"), json!(-1));
        assert_eq!(cell(""), Value::Null);
        assert_eq!(cell("UP 1/3"), json!("UP 1/3"));
        assert_eq!(cell("-"), json!("-"));
        assert_eq!(cell("18446744073709551615"), json!(u64::MAX));
        assert_eq!(
            cell("99999999999999999999999"),
            json!("99999999999999999999999")
        );
    }
}
