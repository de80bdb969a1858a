//! Parser for the HAProxy configuration language (the subset Switchyard implements), into the
//! typed model in [`model`]. Errors and warnings carry `file:line`.
//!
//! Entry points: [`parse_files`] / [`parse_sources`] (several files form one configuration,
//! like `haproxy -f a -f b`). Every error is reported, not only the first; warnings come back
//! in [`Parsed::warnings`] or, on failure, alongside the errors.
//!
//! Supported:
//! * lexing: `#` comments, `"..."` (escapes, `$VAR`/`${VAR}`/`${VAR-default}` expansion),
//!   `'...'` (literal), backslash escapes; `setenv`/`presetenv`/`unsetenv`/`resetenv`
//!   affect later expansions;
//! * `global`: `maxconn`, `log`, `log-send-hostname`, `log-tag`, `stats socket`, `user`,
//!   `group`, `daemon`, `nbthread`, `pidfile`, `hard-stop-after`; known HAProxy globals
//!   (`chroot`, `tune.*`, `ssl-default-bind-*`, `nbproc`, `cpu-map`, ...) warn and are ignored;
//! * `defaults [NAME] [from NAME]`, `frontend`/`backend`/`listen NAME [from NAME]`,
//!   `listen NAME ADDR`; `userlist`, `peers`, `resolvers`, `cache`, `program`, `mailers`,
//!   `ring`, `http-errors`, ... are skipped with one warning;
//! * proxies: `bind`, `mode tcp` (`mode http` only while the proxy starts nothing, or serves
//!   only the stats page: see `stats` below),
//!   `default_backend`, `use_backend` (unconditional), `balance`, `hash-type`, `server`,
//!   `default-server`, `maxconn`, `fullconn`, `retries`, `http-reuse`, `option` (redispatch, tcplog, httplog,
//!   tcpka, clitcpka, srvtcpka, dontlognull, allbackups, logasap, forwardfor,
//!   http-server-close, httpclose, http-keep-alive, http-ignore-probes, the check options below,
//!   and kernel-forward, a Switchyard extension: `mode tcp` sessions forwarded by the kernel;
//!   other HAProxy options warn), `no option`, `log`/`log global`/`no log`, `timeout *` (and the deprecated
//!   `contimeout`/`clitimeout`/`srvtimeout`), `disabled`, `enabled`, `id`, `description`;
//!   `acl`, `tcp-request`, `http-request`, `stick-table`, ... warn and are ignored;
//! * the stats page ([`Stats`]): `stats enable|uri|realm|refresh|auth|hide-version|admin if
//!   TRUE|LOCALHOST` and `http-request use-service prometheus-exporter if { path /PATH }`;
//!   a `mode http` frontend/listen with them and nothing to route to is "stats only"
//!   ([`Proxy::is_stats_only`]);
//! * health checks (in `defaults`, `backend`, `listen`; into [`Proxy::health_check`]):
//!   `option httpchk [[METHOD] URI [VERSION]]` (headers embedded in VERSION after `\r\n` are
//!   split out), `http-check send [meth M] [uri U] [ver V] [hdr NAME VALUE]... [body S]`,
//!   `http-check expect [!] status CODE[-CODE][,...]|rstatus RE|string S|rstring RE`,
//!   `option mysql-check [user NAME [post-41|pre-41]]`, `option pgsql-check user NAME`,
//!   `option tcp-check` with `tcp-check connect [port N] [send-proxy] [ssl]`, `send STRING`,
//!   `send-binary HEX`, `expect [min-recv N] [!] string|binary|rstring|rbinary PATTERN`,
//!   `comment TEXT`; `option log-health-checks`. Regular expressions are validated when the
//!   file is read (Rust `regex` syntax). The last check kind written wins; `http-check` and
//!   `tcp-check` rules may come before or after their `option`, are inherited from `defaults`
//!   as a set (a proxy's first rule starts its own set), and warn when no `option` enables
//!   them. `option ldap-check|smtpchk|redis-check|ssl-hello-chk|external-check|spop-check`
//!   warn and fall back to a plain TCP connect; `http-check disable-on-404|connect` warn;
//! * Switchyard extension, database-role checks (see `docs/health-checks.md`, "db-check"):
//!
//!   ```text
//!   db-check postgres|mysql|galera user NAME
//!            [password PASS | password-file PATH | password-env VAR]
//!            [dbname NAME] [role primary|standby|any] [max-lag DURATION] [allow-donor]
//!   ```
//!
//!   It replaces any other check kind of the section (and is replaced by a later one). `user`
//!   is mandatory; `role` is refused for `galera` (judged by its sync state), `allow-donor` for
//!   the others; `max-lag` with `role primary` warns (ignored). An inline `password` warns in
//!   favour of `password-file`/`password-env`; its value never appears in a diagnostic or in
//!   `Debug` output ([`Secret`]);
//! * servers' check settings: `check`, `inter`, `fastinter`, `downinter`, `rise`, `fall`,
//!   `port`, `addr`, `agent-check`, `agent-port`, `agent-inter`, `agent-send`, `agent-addr`,
//!   `observe layer4`, `error-limit`, `on-error`, `on-marked-down`, `on-marked-up`;
//! * servers' idle connection pools: `pool-max-conn`, `pool-purge-delay`, `pool-low-conn`;
//! * validation: backend references, duplicate proxy/server names and ids, capabilities,
//!   frontends without `bind` or without a backend (warnings).
//!
//! Proxy and server ids: explicit `id N` first, then the lowest free id from 1 in
//! declaration order.

mod addr;
mod diagnostic;
mod exposure;
mod lexer;
pub mod model;
mod parser;
mod units;
mod vrrp;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::*;
pub use parser::{Parsed, Source};
pub use units::{parse_duration, parse_size};
pub use vrrp::{TrackBackend, VrrpInstance, VrrpScript};

/// Reads and parses files in order, like `haproxy -f a -f b`. An unreadable file is reported
/// as an error at line 0 of that file; the other files are still checked.
pub fn parse_files(paths: &[impl AsRef<std::path::Path>]) -> Result<Parsed, Diagnostics> {
    parser::parse_files(paths).map(with_exposure_warnings)
}

/// Parses configuration texts in order, as if they were files.
pub fn parse_sources(sources: &[Source]) -> Result<Parsed, Diagnostics> {
    parser::parse_sources(sources).map(with_exposure_warnings)
}

/// Valid but dangerous settings (an admin socket or page open to the network) are warnings
/// found on the whole model, after parsing.
fn with_exposure_warnings(mut parsed: Parsed) -> Parsed {
    parsed.warnings.extend(exposure::warnings(&parsed.config));
    parsed
}
