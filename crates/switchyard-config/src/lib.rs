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
//! * proxies: `bind`, `mode tcp` (`mode http` only while the proxy starts nothing),
//!   `default_backend`, `use_backend` (unconditional), `balance`, `hash-type`, `server`,
//!   `default-server`, `maxconn`, `fullconn`, `retries`, `option` (redispatch, tcplog, httplog,
//!   tcpka, clitcpka, srvtcpka, dontlognull, allbackups, logasap; other HAProxy options
//!   warn), `no option`, `log`/`log global`/`no log`, `timeout *` (and the deprecated
//!   `contimeout`/`clitimeout`/`srvtimeout`), `disabled`, `enabled`, `id`, `description`;
//!   `acl`, `stats`, `tcp-request`, `http-request`, `stick-table`, ... warn and are ignored;
//! * validation: backend references, duplicate proxy/server names and ids, capabilities,
//!   frontends without `bind` or without a backend (warnings).
//!
//! Proxy and server ids: explicit `id N` first, then the lowest free id from 1 in
//! declaration order.

mod addr;
mod diagnostic;
mod lexer;
pub mod model;
mod parser;
mod units;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::*;
pub use parser::{parse_files, parse_sources, Parsed, Source};
pub use units::{parse_duration, parse_size};
