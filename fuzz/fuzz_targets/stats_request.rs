//! What a browser or script sends to the stats page: the `;options` after the stats URI,
//! the query string (Prometheus `scope`), an admin form body, the `Authorization` header and
//! the `Origin`/`Host` pair. Never a panic; decoded pairs re-encode to themselves; a form
//! accepted carries only valid names; credentials decoded are the ones encoded.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use switchyard_stats::admin::{self, BackendRef};
use switchyard_stats::prometheus::Scope;
use switchyard_stats::request;

/// Percent-encodes every byte but letters and digits, so the result parses back unchanged.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by NUL: options, query, form body, Authorization, Origin, Host.
    let mut fields = data.split(|&b| b == 0);
    let mut next = || fields.next().unwrap_or_default();
    let (options, query, body, authorization, origin, host) =
        (next(), next(), next(), next(), next(), next());

    if let Ok(options) = std::str::from_utf8(options) {
        let _ = request::parse_options(options);
    }
    if let Ok(query) = std::str::from_utf8(query) {
        let _ = Scope::from_query(Some(query));
        if let Ok(pairs) = request::parse_pairs(query) {
            let encoded: Vec<String> = pairs
                .iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{}={}", encode(key), encode(value)),
                    None => encode(key),
                })
                .collect();
            assert_eq!(request::parse_pairs(&encoded.join("&")), Ok(pairs));
        }
    }
    if let Ok(body) = std::str::from_utf8(body) {
        if let Ok(form) = admin::parse_form(body) {
            assert!(!form.servers.is_empty());
            assert!(form.servers.iter().all(|s| admin::valid_name(s)));
            if let BackendRef::Name(name) = &form.backend {
                assert!(admin::valid_name(name));
            }
        }
    }
    if let Some((user, password)) = request::basic_credentials(authorization) {
        let auths = [(user.clone(), password.clone())];
        assert!(request::authorized(Some(authorization), &auths));
        let again = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        assert_eq!(
            request::basic_credentials(format!("Basic {again}").as_bytes()),
            Some((user.clone(), password.clone()))
        );
        let wrong = [(user, format!("{password}x"))];
        assert!(!request::authorized(Some(authorization), &wrong));
    }
    let _ = request::same_origin(origin, Some(host));
});
