//! Runtime API output, byte for byte what HAProxy 2.6 prints, as pure functions of the plain
//! data in [`crate::model`].
//!
//! Every function returns a command's own output. HAProxy's CLI then ends each reply with one
//! more `"\n"` in non-interactive mode ([`CLI_TERMINATOR`]; `"\n> "` in prompt mode), so what
//! `socat` shows for `show backend` is `show_backend(..) + "\n"`. Replies that look as if
//! they lacked the blank line (`Server deleted.`) are just messages HAProxy emits without a
//! newline of their own.
//!
//! Golden captures of the real HAProxy live in `tests/golden/haproxy_*.txt`
//! (`scripts/capture-haproxy-golden.sh`).

mod fields;
mod info;
pub mod replies;
mod servers;
mod stat;

pub use crate::model::FormatKind;
pub use info::show_info;
pub use servers::{
    find_server, get_weight, show_backend, show_servers_conn, show_servers_state,
    SERVERS_STATE_HEADER,
};
pub use stat::{server_status, show_stat};

/// What HAProxy's CLI appends after each command's output in non-interactive mode.
pub const CLI_TERMINATOR: &str = "\n";

/// A typed field value (HAProxy's `FF_*` field formats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Str(String),
    U32(u32),
    S32(i32),
    U64(u64),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "str",
            Value::U32(_) => "u32",
            Value::S32(_) => "s32",
            Value::U64(_) => "u64",
        }
    }

    fn raw(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::U32(v) => v.to_string(),
            Value::S32(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
        }
    }

    fn json(&self) -> String {
        match self {
            Value::Str(s) => format!("\"{}\"", json_escape(s)),
            other => other.raw(),
        }
    }
}

/// The JSON `tags` object of HAProxy's three-letter tags (origin, nature, scope).
pub(crate) fn json_tags(tags: &str) -> String {
    let mut it = tags.chars();
    let origin = match it.next() {
        Some('M') => "Metric",
        Some('S') => "Status",
        Some('K') => "Key",
        Some('C') => "Config",
        Some('P') => "Product",
        _ => "Unknown",
    };
    let nature = match it.next() {
        Some('A') => "Age",
        Some('a') => "Avg",
        Some('C') => "Counter",
        Some('D') => "Duration",
        Some('G') => "Gauge",
        Some('L') => "Limit",
        Some('M') => "Max",
        Some('N') => "Name",
        Some('O') => "Output",
        Some('R') => "Rate",
        Some('T') => "Time",
        _ => "Unknown",
    };
    let scope = match it.next() {
        Some('P') => "Process",
        Some('S') => "Service",
        Some('s') => "System",
        Some('C') => "Cluster",
        _ => "Unknown",
    };
    format!("{{\"origin\":\"{origin}\",\"nature\":\"{nature}\",\"scope\":\"{scope}\"}}")
}

pub(crate) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// HAProxy's `csv_enc`: a string with a comma, a quote, a line break or a leading/trailing
/// space is quoted, its quotes doubled.
pub(crate) fn csv_escape(s: &str) -> String {
    let quote = s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ');
    if quote {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tags_expand_letters() {
        assert_eq!(
            json_tags("KNS"),
            r#"{"origin":"Key","nature":"Name","scope":"Service"}"#
        );
        assert_eq!(
            json_tags("MaP"),
            r#"{"origin":"Metric","nature":"Avg","scope":"Process"}"#
        );
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_escape("Layer4 check passed"), "Layer4 check passed");
        assert_eq!(csv_escape("a,b"), "\"a,b\"");
        assert_eq!(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn json_escapes_quotes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
