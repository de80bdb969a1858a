//! `stick-table` and `stick on|match|store-request|store-response` rules.

use super::Sink;
use crate::model::{Mode, Span, Stick, StickKind, StickSample, StickTable};
use crate::units::{parse_duration, parse_size};

/// HAProxy's default key length of a string table.
const DEFAULT_KEY_LEN: usize = 32;

/// What a section said, before the table and the rules are checked against each other.
#[derive(Debug, Clone, Default)]
pub(super) struct Draft {
    table: Option<(StickTable, Span)>,
    match_on: Option<(StickSample, Span)>,
    store_request: Option<(StickSample, Span)>,
    store_response: Option<(String, Span)>,
}

/// `stick-table type ip|ipv6|string [len N] size N [expire T] [nopurge] [...]`.
pub(super) fn parse_table(sink: &mut Sink, d: &mut super::Draft, w: &[String], span: &Span) {
    let mut table = StickTable {
        kind: StickKind::Ip,
        size: 0,
        expire: None,
        key_len: DEFAULT_KEY_LEN,
    };
    let mut kind = None;
    let mut i = 1;
    while i < w.len() {
        let value = w.get(i + 1).map(String::as_str);
        match (w[i].as_str(), value) {
            ("type", Some(t)) => kind = Some(t.to_string()),
            ("size", Some(v)) => match parse_size(v) {
                Ok(n) if n > 0 => table.size = n,
                _ => sink.err(span, format!("'stick-table': bad size '{v}'")),
            },
            ("len", Some(v)) => match v.parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => table.key_len = n,
                _ => sink.err(
                    span,
                    format!("'stick-table': 'len' expects 1 to 1024, not '{v}'"),
                ),
            },
            ("expire", Some(v)) => match parse_duration(v) {
                Ok(d) => table.expire = Some(d),
                Err(e) => sink.err(span, format!("'stick-table': 'expire': {e}")),
            },
            ("nopurge", _) => {
                i += 1;
                continue;
            }
            (other @ ("peers" | "store" | "srvkey" | "write-to" | "recv-only"), Some(_)) => {
                sink.not_implemented(span, &format!("stick-table {other}"))
            }
            (other, _) => {
                sink.err(span, format!("'stick-table': unexpected '{other}'"));
                return;
            }
        }
        i += 2;
    }
    table.kind = match kind.as_deref() {
        Some("ip") => StickKind::Ip,
        Some("ipv6") => StickKind::Ipv6,
        Some("string") => StickKind::String,
        Some(other @ ("integer" | "binary")) => {
            sink.not_implemented(span, &format!("stick-table type {other}"));
            return;
        }
        Some(other) => {
            sink.err(
                span,
                format!("'stick-table': unknown type '{other}' (expected ip, ipv6 or string)"),
            );
            return;
        }
        None => {
            sink.err(span, "'stick-table' needs 'type ip', 'ipv6' or 'string'");
            return;
        }
    };
    if table.size == 0 {
        sink.err(span, "'stick-table' needs 'size N'");
        return;
    }
    if d.stick.table.is_some() {
        sink.err(span, "only one 'stick-table' per section");
        return;
    }
    d.stick.table = Some((table, span.clone()));
}

/// `stick on|match|store-request SAMPLE` and `stick store-response res.cook(NAME)`.
pub(super) fn parse_rule(sink: &mut Sink, d: &mut super::Draft, w: &[String], span: &Span) {
    let (Some(verb), Some(sample)) = (w.get(1), w.get(2)) else {
        sink.err(
            span,
            "'stick' expects on, match, store-request or store-response and a sample",
        );
        return;
    };
    if w.len() > 3 {
        sink.err(
            span,
            format!("'stick {verb}' with a condition or another table is not supported"),
        );
        return;
    }
    if verb == "store-response" {
        match argument(sample, &["res.cook", "set-cookie"]) {
            Some(name) => set_once(sink, &mut d.stick.store_response, name, span, verb),
            None => sink.err(
                span,
                format!("'stick store-response': unsupported sample '{sample}' (expected res.cook(NAME))"),
            ),
        }
        return;
    }
    let Some(parsed) = parse_sample(sample) else {
        sink.err(
            span,
            format!(
                "'stick {verb}': unsupported sample '{sample}' (expected src, req.cook(NAME), req.hdr(NAME) or url_param(NAME))"
            ),
        );
        return;
    };
    match verb.as_str() {
        "on" if d.stick.match_on.is_some() || d.stick.store_request.is_some() => {
            // Warn once, for the match: the store is the same rule.
            set_once(sink, &mut d.stick.match_on, parsed.clone(), span, verb);
            d.stick.store_request.get_or_insert((parsed, span.clone()));
        }
        "on" => {
            d.stick.match_on = Some((parsed.clone(), span.clone()));
            d.stick.store_request = Some((parsed, span.clone()));
        }
        "match" => set_once(sink, &mut d.stick.match_on, parsed, span, verb),
        "store-request" => set_once(sink, &mut d.stick.store_request, parsed, span, verb),
        other => sink.err(
            span,
            format!(
                "unknown 'stick {other}' (expected on, match, store-request or store-response)"
            ),
        ),
    }
}

/// Only the first rule of a kind applies: HAProxy stops at the first that matches, and
/// without conditions that is always the first.
fn set_once<T>(sink: &mut Sink, slot: &mut Option<(T, Span)>, value: T, span: &Span, verb: &str) {
    match slot {
        Some((_, first)) => sink.warn(
            span,
            format!(
                "'stick {verb}' after the one at line {}: ignored",
                first.line
            ),
        ),
        None => *slot = Some((value, span.clone())),
    }
}

fn parse_sample(text: &str) -> Option<StickSample> {
    if text == "src" {
        return Some(StickSample::Src);
    }
    if let Some(name) = argument(text, &["req.cook", "cookie"]) {
        return Some(StickSample::RequestCookie(name));
    }
    if let Some(name) = argument(text, &["req.hdr", "hdr"]) {
        return Some(StickSample::Header(name));
    }
    argument(text, &["url_param", "urlp"]).map(StickSample::UrlParam)
}

/// `FETCH(NAME)` for one of the fetch names, with a non-empty argument.
fn argument(text: &str, fetches: &[&str]) -> Option<String> {
    let (fetch, rest) = text.split_once('(')?;
    let name = rest.strip_suffix(')')?;
    (fetches.contains(&fetch) && !name.is_empty() && !name.contains([',', '(', ')']))
        .then(|| name.to_string())
}

/// Checks the rules against the table and the section's mode, and stores the result.
pub(super) fn resolve(sink: &mut Sink, d: &mut super::Draft) {
    let draft = std::mem::take(&mut d.stick);
    let rules: Vec<&Span> = [
        draft.match_on.as_ref().map(|(_, s)| s),
        draft.store_request.as_ref().map(|(_, s)| s),
        draft.store_response.as_ref().map(|(_, s)| s),
    ]
    .into_iter()
    .flatten()
    .collect();
    let Some((table, table_span)) = draft.table else {
        if let Some(first) = rules.first() {
            sink.err(
                first,
                "'stick' rules need a 'stick-table' in the same section",
            );
        }
        return;
    };
    if rules.is_empty() {
        sink.warn(
            &table_span,
            "'stick-table' is used only by 'stick' rules, and there are none: ignored",
        );
        return;
    }
    let mut ok = true;
    // `stick on` fills both with the same line: check it once.
    let store_request = draft
        .store_request
        .as_ref()
        .filter(|(_, span)| draft.match_on.as_ref().is_none_or(|(_, m)| m != span));
    for (sample, span) in [draft.match_on.as_ref(), store_request]
        .into_iter()
        .flatten()
    {
        let by_address = *sample == StickSample::Src;
        if by_address != (table.kind != StickKind::String) {
            sink.err(
                span,
                if by_address {
                    "'stick ... src' needs a table of type ip or ipv6"
                } else {
                    "this 'stick' rule needs a table of type string"
                },
            );
            ok = false;
        }
        if !by_address && d.proxy.mode != Mode::Http {
            sink.err(
                span,
                "this 'stick' rule reads HTTP requests: it needs 'mode http'",
            );
            ok = false;
        }
    }
    if let Some((_, span)) = &draft.store_response {
        if table.kind != StickKind::String || d.proxy.mode != Mode::Http {
            sink.err(
                span,
                "'stick store-response res.cook()' needs 'mode http' and a table of type string",
            );
            ok = false;
        }
    }
    if ok {
        d.proxy.stick = Some(Stick {
            table,
            match_on: draft.match_on.map(|(s, _)| s),
            store_request: draft.store_request.map(|(s, _)| s),
            store_response_cookie: draft.store_response.map(|(s, _)| s),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples() {
        assert_eq!(parse_sample("src"), Some(StickSample::Src));
        assert_eq!(
            parse_sample("req.cook(JSESSIONID)"),
            Some(StickSample::RequestCookie("JSESSIONID".into()))
        );
        assert_eq!(
            parse_sample("hdr(X-Tenant)"),
            Some(StickSample::Header("X-Tenant".into()))
        );
        assert_eq!(
            parse_sample("urlp(user)"),
            Some(StickSample::UrlParam("user".into()))
        );
        for bad in ["dst", "req.cook()", "req.cook(a,b)", "cookie(x", "src()"] {
            assert_eq!(parse_sample(bad), None, "{bad}");
        }
        assert_eq!(
            argument("res.cook(SID)", &["res.cook"]).as_deref(),
            Some("SID")
        );
    }
}
