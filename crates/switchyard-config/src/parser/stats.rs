//! `stats` lines of proxies (HAProxy's stats page) and the one `http-request use-service`
//! form Switchyard serves: `http-request use-service prometheus-exporter if { path /PATH }`.
//!
//! As in HAProxy, every `stats` keyword but the global-only ones enables the page (`stats
//! auth` alone is enough), settings written in `defaults` are inherited, and the page needs
//! `mode http` — a TCP proxy with `stats` lines gets one warning and no page.

use super::{Draft, Sink};
use crate::model::*;
use crate::units::parse_duration;

/// `stats` keywords HAProxy knows that Switchyard accepts and ignores.
const UNIMPLEMENTED: &[&str] = &[
    "show-legends",
    "show-node",
    "show-desc",
    "show-modules",
    "scope",
    "http-request",
];

/// `stats` keywords that only make sense in `global` (where `stats socket` lives).
const GLOBAL_ONLY: &[&str] = &["socket", "timeout", "maxconn", "bind-process"];

/// One `stats ...` line in a `defaults`, `frontend`, `backend` or `listen` section.
pub(super) fn keyword(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    w: &[String],
    span: &Span,
) {
    let Some(sub) = w.get(1).map(String::as_str) else {
        return sink.err(
            span,
            "'stats' expects enable, uri, realm, refresh, auth, hide-version or admin",
        );
    };
    let args = &w[2..];
    let no_args = |sink: &mut Sink| {
        if let Some(extra) = args.first() {
            sink.err(
                span,
                format!("'stats {sub}': unexpected argument '{extra}'"),
            );
            false
        } else {
            true
        }
    };
    let one_arg = |sink: &mut Sink, what: &str| match args {
        [v] => Some(v.as_str()),
        [] => {
            sink.err(span, format!("'stats {sub}' expects {what}"));
            None
        }
        _ => {
            sink.err(
                span,
                format!("'stats {sub}' expects {what} only (escape spaces with '\\')"),
            );
            None
        }
    };
    let stats = &mut d.proxy.stats;
    match sub {
        "enable" => {
            if !no_args(sink) {
                return;
            }
        }
        "hide-version" => {
            if !no_args(sink) {
                return;
            }
            stats.hide_version = true;
        }
        "uri" => {
            let Some(uri) = one_arg(sink, "a URI prefix (e.g. /stats)") else {
                return;
            };
            if !uri.starts_with('/') {
                sink.warn(
                    span,
                    format!("'stats uri {uri}': a URI not starting with '/' never matches a request path"),
                );
            }
            stats.uri = uri.to_string();
        }
        "realm" => {
            let Some(realm) = one_arg(sink, "a realm") else {
                return;
            };
            stats.realm = Some(realm.to_string());
        }
        "refresh" => {
            let Some(value) = one_arg(sink, "a delay (e.g. 10s)") else {
                return;
            };
            match parse_duration(value) {
                Ok(delay) => stats.refresh = Some(delay),
                Err(e) => return sink.err(span, format!("'stats refresh': {e}")),
            }
        }
        "auth" => {
            let Some(credentials) = one_arg(sink, "USER:PASSWORD") else {
                return;
            };
            // The password is never echoed back: a diagnostic may end up in a CI log.
            match credentials.split_once(':') {
                Some((user, password)) if !user.is_empty() => stats.auths.push(StatsAuth {
                    user: user.to_string(),
                    password: Secret::Inline(password.to_string()),
                }),
                Some(_) => return sink.err(span, "'stats auth': the user name is empty"),
                None => return sink.err(span, "'stats auth' expects USER:PASSWORD"),
            }
        }
        "admin" => {
            if is_defaults {
                return sink.err(span, "'stats admin' not allowed in 'defaults' section");
            }
            match args {
                [kw, cond] if kw == "if" && cond == "TRUE" => {
                    stats.admin = Some(StatsAdmin::Always);
                }
                [kw, cond] if kw == "if" && cond == "LOCALHOST" => {
                    // A later `if TRUE` already allows everyone; keep the wider one.
                    if stats.admin != Some(StatsAdmin::Always) {
                        stats.admin = Some(StatsAdmin::Localhost);
                    }
                }
                [kw, _, ..] if kw == "if" || kw == "unless" => {
                    // Refusing the whole configuration for a stats ACL would be harsh; the
                    // safe reading of a condition we cannot evaluate is "never".
                    sink.warn(
                        span,
                        format!(
                            "'stats admin {}': only 'if TRUE' and 'if LOCALHOST' are supported; admin actions stay disabled",
                            args.join(" ")
                        ),
                    );
                }
                _ => {
                    return sink.err(
                        span,
                        "'stats admin' requires either 'if' or 'unless' followed by a condition (e.g. 'stats admin if LOCALHOST')",
                    )
                }
            }
        }
        _ if GLOBAL_ONLY.contains(&sub) => {
            return sink.err(
                span,
                format!("'stats {sub}' is only valid in the 'global' section"),
            )
        }
        _ if UNIMPLEMENTED.contains(&sub) => sink.not_implemented(span, &format!("stats {sub}")),
        other => {
            return sink.err(
                span,
                format!(
                    "unknown 'stats' keyword '{other}' (expected enable, uri, realm, refresh, auth, hide-version or admin)"
                ),
            )
        }
    }
    stats.enabled = true;
    if stats.span.is_none() {
        stats.span = Some(span.clone());
    }
}

/// `http-request use-service ...`: only `prometheus-exporter if { path /PATH }` is served.
pub(super) fn use_service(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    w: &[String],
    span: &Span,
) {
    let words: Vec<&str> = w[2..].iter().map(String::as_str).collect();
    let path = match words.as_slice() {
        ["prometheus-exporter", "if", "{", "path", path, "}"] if path.starts_with('/') => *path,
        _ => {
            return sink.warn(
                span,
                "'http-request use-service' is only supported as 'http-request use-service prometheus-exporter if { path /PATH }'; rule ignored",
            )
        }
    };
    if is_defaults || !d.proxy.kind.has_frontend() {
        return sink.warn(
            span,
            format!(
                "the Prometheus exporter is served by frontend and listen sections only; rule ignored in '{}' section",
                if is_defaults {
                    "defaults"
                } else {
                    d.proxy.kind.keyword()
                }
            ),
        );
    }
    if let Some(previous) = &d.proxy.stats.prometheus_uri {
        sink.warn(
            span,
            format!("the Prometheus exporter was already on '{previous}'; it moves to '{path}'"),
        );
    }
    d.proxy.stats.prometheus_uri = Some(path.to_string());
}

/// Once the proxy is complete (its mode may come after its `stats` lines): warns about
/// settings that cannot take effect, as HAProxy does.
pub(super) fn validate(sink: &mut Sink, p: &Proxy) {
    let stats = &p.stats;
    if !stats.enabled && stats.prometheus_uri.is_none() {
        return;
    }
    let span = stats.span.as_ref().unwrap_or(&p.span);
    let kw = p.kind.keyword();
    if !p.kind.has_frontend() {
        if stats.enabled {
            sink.warn(
                span,
                format!(
                    "'stats' ignored for backend '{}': Switchyard serves the stats page from frontend and listen sections only",
                    p.name
                ),
            );
        }
        return;
    }
    let what = if stats.enabled {
        "'stats' statement"
    } else {
        "the Prometheus exporter rule"
    };
    if p.mode != Mode::Http {
        sink.warn(
            span,
            format!(
                "{what} ignored for {kw} '{}' as it requires HTTP mode",
                p.name
            ),
        );
    } else if !p.disabled && !p.is_stats_only() {
        // The section is refused (HTTP proxying is not implemented); say how to keep the page.
        sink.warn(
            span,
            format!(
                "{kw} '{}': the stats page and the Prometheus exporter need a section of their own, without servers, default_backend or use_backend",
                p.name
            ),
        );
    }
}
