//! Health-check keywords: `option httpchk|mysql-check|pgsql-check|tcp-check|...`,
//! `http-check`, `tcp-check`, `option log-health-checks` and Switchyard's `db-check`.
//!
//! `http-check` and `tcp-check` rules are collected in [`CheckRules`] as they come (HAProxy
//! accepts them before or after the `option` that enables them) and folded into
//! `Proxy::health_check` by [`resolve`] once the configuration is read.

use std::path::PathBuf;

use super::{cap_warning, parse_u32, Draft, Sink};
use crate::model::*;
use crate::units::parse_duration;

/// `http-check send` fields; each one given overrides the request of `option httpchk`.
#[derive(Clone, Default)]
pub(super) struct HttpSend {
    method: Option<String>,
    uri: Option<String>,
    version: Option<String>,
    /// Replace those of `option httpchk` when not empty (as HAProxy merges the two).
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// Check rules of a section being read. A proxy starts with the rules of its `defaults`; its
/// first rule of a family (`http-check` or `tcp-check`) drops the inherited ones of that family,
/// so a proxy either uses the defaults' rules or only its own, as in HAProxy.
#[derive(Clone, Default)]
pub(super) struct CheckRules {
    http_send: Option<HttpSend>,
    http_expect: Option<HttpExpect>,
    /// First `http-check` rule of the set in effect.
    http_span: Option<Span>,
    http_local: bool,
    tcp: Vec<TcpCheckRule>,
    tcp_span: Option<Span>,
    tcp_local: bool,
    /// Line that chose `Proxy::health_check` in this section, and its keyword.
    kind_set: Option<(Span, String)>,
}

impl CheckRules {
    /// Called when a section starts from a `defaults`: keep the rules, but mark them inherited.
    pub(super) fn inherit(&mut self) {
        self.http_local = false;
        self.tcp_local = false;
        self.kind_set = None;
    }

    fn http_rules(&mut self, span: &Span) {
        if !self.http_local {
            self.http_send = None;
            self.http_expect = None;
            self.http_span = None;
            self.http_local = true;
        }
        self.http_span.get_or_insert_with(|| span.clone());
    }

    fn tcp_rule(&mut self, span: &Span, rule: TcpCheckRule) {
        if !self.tcp_local {
            self.tcp.clear();
            self.tcp_span = None;
            self.tcp_local = true;
        }
        self.tcp_span.get_or_insert_with(|| span.clone());
        self.tcp.push(rule);
    }
}

/// Options that choose a check kind; `negation is not supported` for them, as in HAProxy.
pub(super) const CHECK_OPTIONS: &[&str] = &[
    "httpchk",
    "mysql-check",
    "pgsql-check",
    "tcp-check",
    "ldap-check",
    "smtpchk",
    "redis-check",
    "ssl-hello-chk",
    "external-check",
    "spop-check",
];

/// Check kinds HAProxy has and Switchyard does not implement yet.
const FALLBACK_OPTIONS: &[&str] = &[
    "ldap-check",
    "smtpchk",
    "redis-check",
    "ssl-hello-chk",
    "external-check",
    "spop-check",
];

/// Whether a proxy section may hold check settings; warns (and says to ignore) when not.
fn backend_capable(sink: &mut Sink, d: &Draft, is_defaults: bool, what: &str, span: &Span) -> bool {
    if is_defaults || d.proxy.kind.has_backend() {
        true
    } else {
        cap_warning(sink, d, what, span, true);
        false
    }
}

/// Installs a new check kind, replacing the one in effect (a warning when both were written in
/// this section and differ, since only the last one counts).
fn set_kind(sink: &mut Sink, d: &mut Draft, kind: HealthCheck, what: &str, span: &Span) {
    if let Some((at, prev)) = &d.checks.kind_set {
        if prev != what
            && std::mem::discriminant(&d.proxy.health_check) != std::mem::discriminant(&kind)
        {
            sink.warn(
                span,
                format!("'{what}' replaces the health check '{prev}' set at {at}; only the last one is used"),
            );
        }
    }
    d.checks.kind_set = Some((span.clone(), what.to_string()));
    d.proxy.health_check = kind;
}

/// `option NAME ...` / `no option NAME` for the check options and `log-health-checks`.
/// Returns false when `name` is not one of them.
pub(super) fn parse_check_option(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    negate: bool,
    w: &[String],
    span: &Span,
) -> bool {
    let name = w[1].as_str();
    let args = &w[2..];
    let prefix = if negate { "no option" } else { "option" };
    if name == "log-health-checks" {
        if let Some(a) = args.first() {
            sink.err(
                span,
                format!("'{prefix} {name}': unexpected argument '{a}'"),
            );
        } else if backend_capable(sink, d, is_defaults, &format!("{prefix} {name}"), span) {
            d.proxy.log_health_checks = !negate;
        }
        return true;
    }
    if !CHECK_OPTIONS.contains(&name) {
        return false;
    }
    if negate {
        sink.err(
            span,
            format!("negation is not supported for 'option {name}'"),
        );
        return true;
    }
    let what = format!("option {name}");
    if !backend_capable(sink, d, is_defaults, &what, span) {
        return true;
    }
    let kind = match name {
        "httpchk" => option_httpchk(args).map(HealthCheck::Http),
        "mysql-check" => option_mysql_check(args),
        "pgsql-check" => match args {
            [u, user] if u == "user" => Ok(HealthCheck::Pgsql { user: user.clone() }),
            [] | [_] => Err(
                "'option pgsql-check' expects 'user <username>' (the user is mandatory)"
                    .to_string(),
            ),
            [other, ..] if other != "user" => Err(format!(
                "'option pgsql-check': unknown argument '{other}' (expected 'user <username>')"
            )),
            _ => Err(format!(
                "'option pgsql-check': unexpected argument '{}'",
                args[2]
            )),
        },
        "tcp-check" => match args.first() {
            None => Ok(HealthCheck::TcpCheck(Vec::new())),
            Some(a) => Err(format!("'option tcp-check': unexpected argument '{a}'")),
        },
        _ => {
            debug_assert!(FALLBACK_OPTIONS.contains(&name));
            sink.warn(
                span,
                format!("'{what}' is not implemented yet; the health check of this proxy will be a plain TCP connect"),
            );
            Ok(HealthCheck::Tcp)
        }
    };
    match kind {
        Ok(kind) => set_kind(sink, d, kind, &what, span),
        Err(e) => sink.err(span, e),
    }
    true
}

/// `option httpchk`, `option httpchk URI`, `option httpchk METH URI [VERSION]` where VERSION
/// may carry headers after `\r\n` (HAProxy's legacy way of sending a Host header).
fn option_httpchk(args: &[String]) -> Result<HttpCheck, String> {
    let mut h = HttpCheck::default();
    match args {
        [] => {}
        [uri] => h.uri = uri.clone(),
        [meth, uri] => {
            h.method = meth.clone();
            h.uri = uri.clone();
        }
        [meth, uri, version] => {
            h.method = meth.clone();
            h.uri = uri.clone();
            let (v, headers) = split_legacy_version(version)?;
            h.version = v;
            h.headers = headers;
        }
        _ => {
            return Err(
                "'option httpchk': too many arguments (expected [METHOD] URI [VERSION]; escape spaces in embedded headers with '\\ ')"
                .into())
        }
    }
    if h.method.is_empty() || !h.method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("'option httpchk': invalid method '{}'", h.method));
    }
    if h.uri.is_empty() {
        return Err("'option httpchk': empty URI".into());
    }
    Ok(h)
}

/// `HTTP/1.1\r\nHost: example.com` → ("HTTP/1.1", [("Host", "example.com")]). Accepts the
/// separators already decoded by the lexer and still written as `\r\n` (single quotes).
fn split_legacy_version(version: &str) -> Result<(String, Vec<(String, String)>), String> {
    let normalized = version
        .replace("\\r\\n", "\n")
        .replace("\\n", "\n")
        .replace("\r\n", "\n");
    let mut parts = normalized.split('\n');
    let v = parts.next().unwrap_or_default().trim().to_string();
    if v.is_empty() {
        return Err("'option httpchk': empty HTTP version".into());
    }
    let mut headers = Vec::new();
    for part in parts {
        let part = part.trim_end_matches('\r');
        if part.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once(':') else {
            return Err(format!(
                "'option httpchk': invalid header '{part}' after the version (expected 'NAME: VALUE')"
            ));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("'option httpchk': invalid header name '{name}'"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((v, headers))
}

/// RFC 9110 token characters (header names, methods).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn option_mysql_check(args: &[String]) -> Result<HealthCheck, String> {
    match args {
        [] => Ok(HealthCheck::Mysql {
            user: None,
            post_41: true,
        }),
        // HAProxy 2.x sends the 4.1 protocol unless `pre-41` is written.
        [u, user] if u == "user" => Ok(HealthCheck::Mysql {
            user: Some(user.clone()),
            post_41: true,
        }),
        [u, user, v] if u == "user" && (v == "post-41" || v == "pre-41") => Ok(HealthCheck::Mysql {
            user: Some(user.clone()),
            post_41: v == "post-41",
        }),
        [u] if u == "user" => Err("'option mysql-check': 'user' expects a username".into()),
        [u, _, other, ..] if u == "user" => Err(format!(
            "'option mysql-check': unexpected argument '{other}' (expected post-41 or pre-41)"
        )),
        [other, ..] => Err(format!(
            "'option mysql-check': unknown argument '{other}' (expected 'user <username> [post-41|pre-41]')"
        )),
    }
}

/// Checks a pattern against the regex syntax the engine will use.
fn check_regex(what: &str, pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
        let text = e.to_string();
        // The crate's message spans several lines (pattern, caret, reason): keep the reason.
        let reason = text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_string)
            .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
        format!("{what}: invalid regular expression '{pattern}': {reason} (Rust regex syntax: no look-around or backreferences)")
    })
}

/// `http-check <rule> ...`.
pub(super) fn http_check(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    w: &[String],
    span: &Span,
) {
    let Some(rule) = w.get(1).map(String::as_str) else {
        return sink.err(
            span,
            "'http-check' expects a rule (send, expect, connect, disable-on-404, comment)",
        );
    };
    let what = format!("http-check {rule}");
    if !backend_capable(sink, d, is_defaults, &what, span) {
        return;
    }
    let args = &w[2..];
    match rule {
        "send" => match http_send(args) {
            Ok(send) => {
                d.checks.http_rules(span);
                if d.checks.http_send.is_some() {
                    return sink.err(
                        span,
                        "only one 'http-check send' rule per proxy is supported (a sequence of several requests is not implemented)",
                    );
                }
                d.checks.http_send = Some(send);
            }
            Err(e) => sink.err(span, e),
        },
        "expect" => match http_expect(args) {
            Ok(expect) => {
                d.checks.http_rules(span);
                if d.checks.http_expect.is_some() {
                    return sink.err(
                        span,
                        "only one 'http-check expect' rule per proxy is supported",
                    );
                }
                d.checks.http_expect = Some(expect);
            }
            Err(e) => sink.err(span, e),
        },
        "comment" => {
            if args.is_empty() {
                sink.err(span, "'http-check comment' expects a text");
            }
        }
        "disable-on-404" | "connect" | "send-state" => sink.warn(
            span,
            format!("'{what}' is not implemented yet, ignored"),
        ),
        _ => sink.err(
            span,
            format!("'{what}' is not supported (expected send, expect, connect, disable-on-404 or comment)"),
        ),
    }
}

fn http_send(args: &[String]) -> Result<HttpSend, String> {
    let mut s = HttpSend::default();
    let mut i = 0;
    while i < args.len() {
        let kw = args[i].as_str();
        let value = |n: usize| {
            args.get(i + n)
                .ok_or_else(|| format!("'http-check send': '{kw}' expects an argument"))
        };
        match kw {
            "meth" => {
                let m = value(1)?;
                if m.is_empty() || !m.bytes().all(is_token_byte) {
                    return Err(format!("'http-check send': invalid method '{m}'"));
                }
                s.method = Some(m.clone());
                i += 2;
            }
            "uri" => {
                let u = value(1)?;
                if u.is_empty() {
                    return Err("'http-check send': empty URI".into());
                }
                s.uri = Some(u.clone());
                i += 2;
            }
            "ver" => {
                s.version = Some(value(1)?.clone());
                i += 2;
            }
            "hdr" => {
                let name = value(1)?;
                let v = value(2)?;
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err(format!("'http-check send': invalid header name '{name}'"));
                }
                s.headers.push((name.clone(), v.clone()));
                i += 3;
            }
            "body" => {
                s.body = Some(value(1)?.clone());
                i += 2;
            }
            "comment" => {
                value(1)?;
                i += 2;
            }
            "uri-lf" | "body-lf" => {
                return Err(format!(
                    "'http-check send': '{kw}' (log-format) is not implemented yet; use the plain form"
                ))
            }
            other => {
                return Err(format!(
                    "'http-check send': unknown argument '{other}' (expected meth, uri, ver, hdr, body or comment)"
                ))
            }
        }
    }
    Ok(s)
}

/// `http-check expect [comment MSG] [!] status|rstatus|string|rstring PATTERN`.
fn http_expect(args: &[String]) -> Result<HttpExpect, String> {
    let mut negate = false;
    let mut i = 0;
    loop {
        match args.get(i).map(String::as_str) {
            Some("!") => {
                negate = true;
                i += 1;
            }
            Some("comment") => {
                if args.get(i + 1).is_none() {
                    return Err("'http-check expect': 'comment' expects a text".into());
                }
                i += 2;
            }
            Some(
                opt @ ("min-recv" | "ok-status" | "error-status" | "tout-status" | "on-success"
                | "on-error" | "status-code"),
            ) => {
                return Err(format!(
                    "'http-check expect': '{opt}' is not implemented yet"
                ))
            }
            _ => break,
        }
    }
    let (kind, pattern) = expect_match(
        "http-check expect",
        "status|rstatus|string|rstring",
        args,
        i,
    )?;
    let what = format!("'http-check expect {kind}'");
    let matcher = match kind.as_str() {
        "status" => HttpMatch::Status(parse_status_ranges(pattern).map_err(|e| format!("{what}: {e}"))?),
        "rstatus" => {
            check_regex(&what, pattern)?;
            HttpMatch::RStatus(pattern.clone())
        }
        "string" => HttpMatch::String(pattern.clone()),
        "rstring" => {
            check_regex(&what, pattern)?;
            HttpMatch::RString(pattern.clone())
        }
        "hdr" | "fhdr" | "status-code" => {
            return Err(format!("'http-check expect {kind}' is not implemented yet"))
        }
        other => {
            return Err(format!(
                "'http-check expect': unknown match '{other}' (expected status, rstatus, string or rstring)"
            ))
        }
    };
    Ok(HttpExpect { negate, matcher })
}

/// The `KIND PATTERN` at `args[i..]` that ends `directive` (`http-check expect` or `tcp-check
/// expect`, whose match kinds are `kinds`: `a|b|c`), with nothing after it.
fn expect_match<'a>(
    directive: &str,
    kinds: &str,
    args: &'a [String],
    i: usize,
) -> Result<(&'a String, &'a String), String> {
    let Some(kind) = args.get(i) else {
        return Err(format!("'{directive}' expects [!] {kinds} <pattern>"));
    };
    let Some(pattern) = args.get(i + 1) else {
        return Err(format!("'{directive} {kind}' expects a pattern"));
    };
    if let Some(extra) = args.get(i + 2) {
        return Err(format!("'{directive}': unexpected argument '{extra}'"));
    }
    Ok((kind, pattern))
}

/// `200`, `200-399`, `200,301-302`.
fn parse_status_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| -> Result<u16, String> {
        match c.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) && c.trim().len() == 3 => Ok(n),
            _ => Err(format!("invalid status code '{c}' (expected 100-599)")),
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let range = match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo)?, code(hi)?);
                if lo > hi {
                    return Err(format!("invalid status range '{part}' (low > high)"));
                }
                (lo, hi)
            }
            None => {
                let c = code(part)?;
                (c, c)
            }
        };
        out.push(range);
    }
    Ok(out)
}

/// `tcp-check <rule> ...`.
pub(super) fn tcp_check(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    w: &[String],
    span: &Span,
) {
    let Some(rule) = w.get(1).map(String::as_str) else {
        return sink.err(
            span,
            "'tcp-check' expects a rule (connect, send, send-binary, expect, comment)",
        );
    };
    let what = format!("tcp-check {rule}");
    if !backend_capable(sink, d, is_defaults, &what, span) {
        return;
    }
    match tcp_rule(rule, &w[2..]) {
        Ok(r) => d.checks.tcp_rule(span, r),
        Err(e) => sink.err(span, e),
    }
}

fn tcp_rule(rule: &str, args: &[String]) -> Result<TcpCheckRule, String> {
    // `comment MSG` may end send/send-binary/connect/expect rules: dropped.
    let strip_comment = |args: &[String]| -> Result<usize, String> {
        match args.iter().position(|a| a == "comment") {
            Some(at) if at + 2 == args.len() => Ok(at),
            Some(_) => Err(format!(
                "'tcp-check {rule}': 'comment' expects one text, at the end"
            )),
            None => Ok(args.len()),
        }
    };
    match rule {
        "connect" => {
            let end = strip_comment(args)?;
            let (mut port, mut send_proxy, mut ssl) = (None, false, false);
            let mut i = 0;
            while i < end {
                match args[i].as_str() {
                    "port" => {
                        let v = args
                            .get(i + 1)
                            .filter(|_| i + 1 < end)
                            .ok_or("'tcp-check connect': 'port' expects a port number")?;
                        port = Some(crate::addr::parse_port(v).map_err(|e| format!("'tcp-check connect': {e}"))?);
                        i += 2;
                    }
                    "send-proxy" => {
                        send_proxy = true;
                        i += 1;
                    }
                    "ssl" => {
                        ssl = true;
                        i += 1;
                    }
                    "default" | "linger" => i += 1,
                    other @ ("addr" | "sni" | "alpn" | "proto" | "via-socks4") => {
                        return Err(format!("'tcp-check connect': '{other}' is not implemented yet"))
                    }
                    other => {
                        return Err(format!(
                            "'tcp-check connect': unknown argument '{other}' (expected port, send-proxy or ssl)"
                        ))
                    }
                }
            }
            Ok(TcpCheckRule::Connect {
                port,
                send_proxy,
                ssl,
            })
        }
        "send" => match &args[..strip_comment(args)?] {
            [data] => Ok(TcpCheckRule::Send(string_bytes(data))),
            [] => Err("'tcp-check send' expects a string".into()),
            [_, extra, ..] => Err(format!("'tcp-check send': unexpected argument '{extra}' (quote the string or escape spaces)")),
        },
        "send-binary" => match &args[..strip_comment(args)?] {
            [hex] => Ok(TcpCheckRule::Send(
                parse_hex(hex).map_err(|e| format!("'tcp-check send-binary': {e}"))?,
            )),
            [] => Err("'tcp-check send-binary' expects a hexadecimal string".into()),
            [_, extra, ..] => Err(format!("'tcp-check send-binary': unexpected argument '{extra}'")),
        },
        "expect" => tcp_expect(args).map(TcpCheckRule::Expect),
        "comment" => {
            if args.is_empty() {
                Err("'tcp-check comment' expects a text".into())
            } else {
                Ok(TcpCheckRule::Comment(args.join(" ")))
            }
        }
        "send-lf" | "send-binary-lf" | "set-var" | "set-var-fmt" | "unset-var" => {
            Err(format!("'tcp-check {rule}' is not implemented yet"))
        }
        other => Err(format!(
            "unknown rule 'tcp-check {other}' (expected connect, send, send-binary, expect or comment)"
        )),
    }
}

/// The bytes a `tcp-check send` string stands for. The lexer already decoded `\r`, `\n`, `\t`,
/// `\\` and `\xHH`; `\xHH` above 0x7f came out as U+0080..U+00FF, which map back to one byte
/// each (so a literal Latin-1 character in the file is sent as one byte too).
fn string_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => out.push(b),
            Err(_) => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Err("empty hexadecimal string".into());
    }
    if !s.len().is_multiple_of(2) {
        return Err(format!("'{s}' has an odd number of hexadecimal digits"));
    }
    if let Some(bad) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("'{s}' is not hexadecimal (bad character '{bad}')"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// `tcp-check expect [min-recv N] [comment MSG] [!] string|binary|rstring|rbinary PATTERN`.
fn tcp_expect(args: &[String]) -> Result<TcpExpect, String> {
    let mut negate = false;
    let mut min_recv = None;
    let mut i = 0;
    loop {
        match args.get(i).map(String::as_str) {
            Some("!") => {
                negate = true;
                i += 1;
            }
            Some("min-recv") => {
                let v = args
                    .get(i + 1)
                    .ok_or("'tcp-check expect': 'min-recv' expects a number")?;
                // HAProxy: -1 means "as much as the match needs" (the default).
                min_recv = match v.as_str() {
                    "-1" => None,
                    v => Some(
                        parse_u32(v).map_err(|e| format!("'tcp-check expect min-recv': {e}"))?
                            as usize,
                    ),
                };
                i += 2;
            }
            Some("comment") => {
                if args.get(i + 1).is_none() {
                    return Err("'tcp-check expect': 'comment' expects a text".into());
                }
                i += 2;
            }
            Some(
                opt @ ("ok-status" | "error-status" | "tout-status" | "on-success" | "on-error"
                | "status-code"),
            ) => {
                return Err(format!(
                    "'tcp-check expect': '{opt}' is not implemented yet"
                ))
            }
            _ => break,
        }
    }
    let (kind, pattern) =
        expect_match("tcp-check expect", "string|binary|rstring|rbinary", args, i)?;
    let what = format!("'tcp-check expect {kind}'");
    let matcher = match kind.as_str() {
        "string" => TcpMatch::String(pattern.clone()),
        "binary" => TcpMatch::Binary(parse_hex(pattern).map_err(|e| format!("{what}: {e}"))?),
        "rstring" => {
            check_regex(&what, pattern)?;
            TcpMatch::RString(pattern.clone())
        }
        "rbinary" => {
            check_regex(&what, pattern)?;
            TcpMatch::RBinary(pattern.clone())
        }
        "string-lf" | "binary-lf" | "custom" => {
            return Err(format!("'tcp-check expect {kind}' is not implemented yet"))
        }
        other => {
            return Err(format!(
                "'tcp-check expect': unknown match '{other}' (expected string, binary, rstring or rbinary)"
            ))
        }
    };
    Ok(TcpExpect {
        negate,
        matcher,
        min_recv,
    })
}

/// `db-check postgres|mysql|galera user NAME [password P|password-file F|password-env V]
/// [dbname NAME] [role primary|standby|any] [max-lag DURATION] [allow-donor]`.
///
/// The inline password is never put in a message: every diagnostic names the keyword only.
pub(super) fn db_check(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    w: &[String],
    span: &Span,
) {
    if !backend_capable(sink, d, is_defaults, "db-check", span) {
        return;
    }
    const USAGE: &str = "usage: db-check postgres|mysql|galera user NAME [password PASS|password-file PATH|password-env VAR] [dbname NAME] [role primary|standby|any] [max-lag DURATION] [allow-donor]";
    let engine = match w.get(1).map(String::as_str) {
        Some("postgres" | "postgresql" | "pgsql") => DatabaseEngine::Postgres,
        Some("mysql" | "mariadb") => DatabaseEngine::Mysql,
        Some("galera") => DatabaseEngine::Galera,
        Some(other) => {
            return sink.err(
                span,
                format!(
                    "'db-check': unknown database '{other}' (expected postgres, mysql or galera)"
                ),
            )
        }
        None => return sink.err(span, format!("'db-check' expects a database kind; {USAGE}")),
    };
    let mut user = None;
    let mut password: Option<Secret> = None;
    let mut database = None;
    let mut role: Option<DatabaseRole> = None;
    let mut max_lag = None;
    let mut allow_donor = false;
    let mut ok = true;
    let mut i = 2;
    while i < w.len() {
        let kw = w[i].as_str();
        if kw == "allow-donor" {
            allow_donor = true;
            i += 1;
            continue;
        }
        let known = matches!(
            kw,
            "user" | "password" | "password-file" | "password-env" | "dbname" | "role" | "max-lag"
        );
        if !known {
            // A mistyped keyword may be followed by (or be) a password: name it only when it
            // looks like a keyword, and stop reading the line.
            let looks_like_keyword = kw.len() <= 20
                && kw.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && !kw.starts_with("pass");
            let which = if looks_like_keyword {
                format!("'{kw}'")
            } else {
                format!("#{} (not shown)", i - 1)
            };
            sink.err(
                span,
                format!("'db-check': unknown argument {which}; {USAGE}"),
            );
            return;
        }
        let Some(value) = w.get(i + 1) else {
            sink.err(span, format!("'db-check': '{kw}' expects a value"));
            ok = false;
            break;
        };
        i += 2;
        match kw {
            "user" if value.is_empty() => {
                sink.err(span, "'db-check': 'user' expects a non-empty name");
                ok = false;
            }
            "user" => user = Some(value.clone()),
            "password" | "password-file" | "password-env" => {
                if password.is_some() {
                    sink.err(
                        span,
                        "'db-check': give only one of password, password-file and password-env",
                    );
                    ok = false;
                }
                password = Some(match kw {
                    "password" => {
                        sink.warn(
                            span,
                            "'db-check': password written in the configuration; prefer password-file PATH or password-env VAR",
                        );
                        Secret::Inline(value.clone())
                    }
                    "password-file" => Secret::File(PathBuf::from(value)),
                    _ => Secret::Env(value.clone()),
                });
            }
            "dbname" => database = Some(value.clone()),
            "role" => {
                match value.as_str() {
                    "primary" => role = Some(DatabaseRole::Primary),
                    "standby" => role = Some(DatabaseRole::Standby),
                    "any" => role = Some(DatabaseRole::Any),
                    other => {
                        sink.err(
                        span,
                        format!("'db-check': unknown role '{other}' (expected primary, standby or any)"),
                    );
                        ok = false;
                    }
                }
            }
            _ => match parse_duration(value) {
                Ok(lag) => max_lag = Some(lag),
                Err(e) => {
                    sink.err(span, format!("'db-check max-lag': {e}"));
                    ok = false;
                }
            },
        }
    }
    let Some(user) = user else {
        sink.err(span, "'db-check': 'user NAME' is mandatory");
        return;
    };
    if engine == DatabaseEngine::Galera && role.is_some() {
        sink.err(
            span,
            "'db-check galera': 'role' does not apply, a Galera node is judged by its sync state (wsrep_local_state); use 'allow-donor' to accept Donor/Desynced nodes",
        );
        ok = false;
    }
    if engine != DatabaseEngine::Galera && allow_donor {
        sink.err(
            span,
            "'db-check': 'allow-donor' only applies to 'db-check galera'",
        );
        ok = false;
    }
    let role = role.unwrap_or_default();
    if role == DatabaseRole::Primary && max_lag.is_some() {
        sink.warn(
            span,
            "'db-check': 'max-lag' is ignored with 'role primary' (a primary has no replication lag)",
        );
    }
    if !ok {
        return;
    }
    let check = DatabaseCheck {
        engine,
        user,
        password,
        database,
        role,
        max_lag,
        allow_donor,
    };
    set_kind(sink, d, HealthCheck::Database(check), "db-check", span);
}

/// Folds the collected rules into the proxy's check kind once the configuration is read, and
/// warns about rules no `option` enables.
pub(super) fn resolve(sink: &mut Sink, d: &mut Draft) {
    if !d.proxy.kind.has_backend() {
        d.proxy.health_check = HealthCheck::Tcp;
        return;
    }
    let r = &d.checks;
    let (kw, name) = (d.proxy.kind.keyword(), d.proxy.name.clone());
    match &mut d.proxy.health_check {
        HealthCheck::Http(h) => {
            if let Some(s) = &r.http_send {
                if let Some(m) = &s.method {
                    h.method = m.clone();
                }
                if let Some(u) = &s.uri {
                    h.uri = u.clone();
                }
                if let Some(v) = &s.version {
                    h.version = v.clone();
                }
                if !s.headers.is_empty() {
                    h.headers = s.headers.clone();
                }
                if let Some(b) = &s.body {
                    h.body = Some(b.clone());
                }
            }
            h.expect = r.http_expect.clone();
        }
        HealthCheck::TcpCheck(rules) => *rules = r.tcp.clone(),
        _ => {}
    }
    let is_http = matches!(d.proxy.health_check, HealthCheck::Http(_));
    let is_tcp = matches!(d.proxy.health_check, HealthCheck::TcpCheck(_));
    if let (Some(span), false) = (&r.http_span, is_http) {
        sink.warn(
            span,
            format!("{kw} '{name}' uses http-check rules without 'option httpchk', so the rules are ignored"),
        );
    }
    if let (Some(span), false) = (&r.tcp_span, is_tcp) {
        sink.warn(
            span,
            format!("{kw} '{name}' uses tcp-check rules without 'option tcp-check'; they are ignored until 'option tcp-check' is set"),
        );
    }
}
