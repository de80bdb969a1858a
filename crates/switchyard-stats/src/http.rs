//! The HTTP/1.1 server (hyper) and the request router.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use switchyard_api::format::{self, FormatKind};
use switchyard_api::model::StatFilter;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::admin;
use crate::data::{self, View};
use crate::prometheus;
use crate::request::{self, Output};
use crate::{Page, Settings, Source};

/// The page, embedded so the binary needs no file at run time and the page no network.
const PAGE_HTML: &str = include_str!("page.html");

/// Where the server-side values go in the page.
const PAGE_BOOTSTRAP: &str = "/*SWITCHYARD_BOOTSTRAP*/null";

/// Connections served at once per listener; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 256;
/// A connection lives at most this long (keep-alive included), so a stuck client cannot hold
/// a slot forever; browsers simply reconnect.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// Largest admin form accepted (HAProxy answers `EXCD` past its buffer).
const MAX_FORM: usize = 16 * 1024;

/// Binds a stats listener as the runtime API binds its TCP socket (see there).
pub fn bind(addr: SocketAddr, reuseport: bool) -> io::Result<TcpListener> {
    switchyard_api::server::bind_tcp(addr, reuseport)
}

/// Serves one listener until `stop` turns true (or its sender goes away).
pub async fn serve<S: Source>(
    listener: TcpListener,
    settings: Settings,
    source: Arc<S>,
    mut stop: watch::Receiver<bool>,
) {
    let handler = Arc::new(Handler { settings, source });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        if *stop.borrow() {
            return;
        }
        // Wait for a slot before accepting: past the limit, clients wait in the backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(proxy = %handler.settings.proxy, %error, "stats page: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let header_timeout = handler.settings.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let service = service_fn(move |req| {
                let handler = Arc::clone(&handler);
                async move { Ok::<_, Infallible>(handler.handle(req, peer).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

struct Handler<S> {
    settings: Settings,
    source: Arc<S>,
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Statistics are live: never served from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    reply(status, "text/plain; charset=utf-8", body)
}

impl<S: Source> Handler<S> {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        // The exporter first: in HAProxy its `http-request use-service` rule runs before the
        // stats page is considered, and without the page's authentication.
        if let Some(path) = &self.settings.prometheus_uri {
            if req.uri().path() == path {
                return self.metrics(&req);
            }
        }
        let Some(page) = &self.settings.page else {
            return text(StatusCode::NOT_FOUND, "404 Not Found");
        };
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let Some(rest) = target.strip_prefix(page.uri.as_str()) else {
            return text(StatusCode::NOT_FOUND, "404 Not Found");
        };
        if !page.auths.is_empty()
            && !request::authorized(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes),
                &page.auths,
            )
        {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized\nYou need a valid user and password to access this content.",
            );
            if let Ok(value) = HeaderValue::from_str(&format!(
                "Basic realm={}",
                request::quote_realm(&page.realm)
            )) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            return response;
        }
        let options = request::parse_options(rest);
        let admin = page.admin.allows(peer.ip());
        match *req.method() {
            Method::GET | Method::HEAD => self.read(page, &options, admin),
            Method::POST => self.admin(page, req, peer, admin).await,
            _ => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                response
            }
        }
    }

    fn metrics(&self, req: &Request<Incoming>) -> Reply {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match prometheus::Scope::from_query(req.uri().query()) {
            Ok(scope) => {
                let body = prometheus::render(&self.source.stats(), &self.source.info(), scope);
                reply(StatusCode::OK, prometheus::CONTENT_TYPE, body)
            }
            Err(error) => text(StatusCode::BAD_REQUEST, format!("400 Bad Request\n{error}")),
        }
    }

    fn read(&self, page: &Page, options: &request::Options, admin: bool) -> Reply {
        let filter = StatFilter {
            up: options.up,
            no_maint: options.no_maint,
            ..Default::default()
        };
        let view = View {
            admin,
            hide_version: page.hide_version,
            refresh_ms: if options.norefresh {
                0
            } else {
                page.refresh.as_millis().min(u64::MAX as u128) as u64
            },
        };
        match options.output {
            Output::Csv => reply(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                format::show_stat(&self.source.stats(), &filter, FormatKind::Csv),
            ),
            Output::Typed => reply(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                format::show_stat(&self.source.stats(), &filter, FormatKind::Typed),
            ),
            Output::Json => reply(
                StatusCode::OK,
                "application/json",
                format::show_stat(&self.source.stats(), &filter, FormatKind::Json),
            ),
            Output::Info | Output::InfoJson => {
                let mut info = self.source.info();
                if page.hide_version {
                    info.version.clear();
                }
                let (kind, content_type) = if options.output == Output::InfoJson {
                    (FormatKind::Json, "application/json")
                } else {
                    (FormatKind::Csv, "text/plain; charset=utf-8")
                };
                reply(StatusCode::OK, content_type, format::show_info(&info, kind))
            }
            Output::Data => reply(
                StatusCode::OK,
                "application/json",
                data::page_data(&self.source.stats(), &self.source.info(), &filter, view),
            ),
            Output::Page => {
                let data =
                    data::page_data(&self.source.stats(), &self.source.info(), &filter, view);
                let bootstrap = serde_json::json!({
                    "uri": page.uri,
                    "up": options.up,
                    "noMaint": options.no_maint,
                    "norefresh": options.norefresh,
                    "status": options.status,
                    "data": serde_json::from_str::<serde_json::Value>(&data).unwrap_or_default(),
                });
                let html = PAGE_HTML.replacen(PAGE_BOOTSTRAP, &script_json(&bootstrap), 1);
                let mut response = reply(StatusCode::OK, "text/html; charset=utf-8", html);
                let headers = response.headers_mut();
                // Nothing may be loaded from elsewhere: the page works offline and cannot be
                // made to leak data to another site.
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                         img-src data:; connect-src 'self'; form-action 'self'; \
                         base-uri 'none'; frame-ancestors 'none'",
                    ),
                );
                headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                headers.insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                );
                response
            }
        }
    }

    async fn admin(
        &self,
        page: &Page,
        req: Request<Incoming>,
        peer: SocketAddr,
        admin: bool,
    ) -> Reply {
        let headers = req.headers();
        // Who did it, for the log line (authentication already passed when users are set).
        let user = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| request::basic_credentials(v.as_bytes()))
            .map(|(user, _)| user)
            .filter(|_| !page.auths.is_empty())
            .unwrap_or_else(|| "-".to_string());
        let wants_json = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
        if !admin {
            return text(
                StatusCode::FORBIDDEN,
                "403 Forbidden\nAdmin actions are not allowed for this client ('stats admin').",
            );
        }
        // A cross-site form or script must not drive an operator's browser (CSRF): browsers
        // always send Origin on a cross-origin POST; curl and scripts send none.
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
            !request::same_origin(
                origin.as_bytes(),
                headers.get(header::HOST).map(HeaderValue::as_bytes),
            )
        });
        if cross_site || foreign_origin {
            return text(
                StatusCode::FORBIDDEN,
                "403 Forbidden\nCross-origin admin requests are refused.",
            );
        }
        let body = match Limited::new(req.into_body(), MAX_FORM).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("413 Payload Too Large\nAn admin form is limited to {MAX_FORM} bytes."),
                )
            }
        };
        let parsed = std::str::from_utf8(&body)
            .map_err(|_| "the form is not UTF-8".to_string())
            .and_then(admin::parse_form);
        let form = match parsed {
            Ok(form) => form,
            Err(error) => {
                return text(StatusCode::BAD_REQUEST, format!("400 Bad Request\n{error}"))
            }
        };
        let stats = self.source.stats();
        let mut outcomes = Vec::with_capacity(form.servers.len());
        match admin::backend_name(&stats, &form.backend) {
            None => {
                for server in &form.servers {
                    outcomes.push(admin::Outcome::new(
                        server.clone(),
                        String::new(),
                        "No such backend.",
                    ));
                }
            }
            Some(backend) => {
                for server in &form.servers {
                    let command = form.action.command(backend, server, &form.weight);
                    let answer = match switchyard_api::command::parse(&command) {
                        Ok(parsed) => self.source.execute(parsed).await,
                        Err(error) => error.to_string(),
                    };
                    outcomes.push(admin::Outcome::new(
                        format!("{backend}/{server}"),
                        command,
                        &answer,
                    ));
                }
            }
        }
        let status = admin::status(&outcomes);
        for outcome in &outcomes {
            tracing::info!(
                proxy = %self.settings.proxy,
                client = %peer,
                user = %user,
                command = %outcome.command,
                answer = %outcome.answer,
                "stats page admin action"
            );
        }
        if wants_json {
            return reply(
                StatusCode::OK,
                "application/json",
                admin::json_answer(status, &outcomes),
            );
        }
        // HAProxy's answer to its own form: back to the page, with the outcome in `;st=`.
        let mut response = text(StatusCode::SEE_OTHER, format!("303 See Other\n{status}"));
        if let Ok(location) = HeaderValue::from_str(&format!("{};st={status}", page.uri)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// JSON safe inside a `<script>` element: `<`, `>` and `&` escaped so no value can close
/// the element or open a comment, whatever proxy or server names contain.
fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_cannot_close_the_script() {
        let v = serde_json::json!({"name": "</script><script>alert(1)</script>&"});
        let s = script_json(&v);
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn page_has_one_bootstrap_slot() {
        assert_eq!(PAGE_HTML.matches(PAGE_BOOTSTRAP).count(), 1);
        // No external asset: no http(s) URL is loaded by the page.
        assert!(
            !PAGE_HTML.contains("src=\"http"),
            "external script or image"
        );
        assert!(
            !PAGE_HTML.contains("href=\"http"),
            "external stylesheet or link"
        );
        assert!(!PAGE_HTML.contains("@import"), "external stylesheet");
    }
}
