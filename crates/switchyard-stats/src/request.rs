//! Parsing what clients send: the `;options` after the stats URI, query strings and forms,
//! basic-authentication headers. Pure functions over untrusted text: nothing here panics,
//! and anything malformed is an `Err` the server turns into `400 Bad Request`.

use base64::Engine as _;

/// What a request under the stats URI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// The HTML page.
    #[default]
    Page,
    /// `;csv`: `show stat`.
    Csv,
    /// `;json`: `show stat json`.
    Json,
    /// `;typed`: `show stat typed`.
    Typed,
    /// `;data`: the compact JSON the page polls.
    Data,
    /// `;info`: `show info`.
    Info,
    /// `;info;json`: `show info json`.
    InfoJson,
}

/// The `;options` HAProxy accepts after the stats URI, plus Switchyard's `;data` and `;info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub output: Output,
    /// `;up`: only servers that are up.
    pub up: bool,
    /// `;no-maint`: no server in maintenance.
    pub no_maint: bool,
    /// `;norefresh`: the page does not update itself.
    pub norefresh: bool,
    /// `;st=CODE`: the outcome of an admin action, shown by the page (HAProxy's codes).
    pub status: Option<&'static str>,
}

/// The outcome codes HAProxy puts in `;st=` after an admin action.
pub const STATUS_CODES: &[&str] = &["DONE", "PART", "NONE", "ERRP", "EXCD", "DENY", "UNKN"];

/// Options from what follows the stats URI in the request target (e.g. `;csv;norefresh`).
/// Unknown options are ignored, as HAProxy does; the text before the first `;` is not an
/// option (it is whatever followed the URI prefix).
pub fn parse_options(rest: &str) -> Options {
    let mut options = Options::default();
    let mut json = false;
    let mut info = false;
    let mut csv = false;
    let mut typed = false;
    let mut data = false;
    for option in rest.split(';').skip(1) {
        match option {
            "up" => options.up = true,
            "no-maint" => options.no_maint = true,
            "norefresh" => options.norefresh = true,
            "csv" => csv = true,
            "json" => json = true,
            "typed" => typed = true,
            "data" => data = true,
            "info" => info = true,
            _ => {
                if let Some(code) = option.strip_prefix("st=") {
                    options.status = STATUS_CODES.iter().copied().find(|c| *c == code);
                }
            }
        }
    }
    options.output = match () {
        _ if info && json => Output::InfoJson,
        _ if info => Output::Info,
        _ if data => Output::Data,
        _ if json => Output::Json,
        _ if typed => Output::Typed,
        _ if csv => Output::Csv,
        _ => Output::Page,
    };
    options
}

/// Percent-decodes `s`; with `form`, `+` is a space (`application/x-www-form-urlencoded`).
/// A truncated or non-hex escape, or bytes that are not UTF-8, are an error.
pub fn percent_decode(s: &str, form: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid percent-encoding in '{s}'"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded text is not UTF-8".to_string())
}

/// `key=value&key&...` (a query string or a urlencoded form) into decoded pairs, in order.
/// Empty pieces (`a=1&&b=2`) are skipped.
pub fn parse_pairs(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut pairs = Vec::new();
    for piece in s.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = match piece.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (piece, None),
        };
        let key = percent_decode(key, true)?;
        let value = value.map(|v| percent_decode(v, true)).transpose()?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Whether an `Authorization` header carries one of the `stats auth` credentials.
pub fn authorized(header: Option<&[u8]>, auths: &[(String, String)]) -> bool {
    let Some((user, password)) = header.and_then(basic_credentials) else {
        return false;
    };
    // Every entry is compared (no early exit) so timing does not tell which user exists.
    auths.iter().fold(false, |found, (u, p)| {
        found
            | (constant_time_eq(u.as_bytes(), user.as_bytes())
                & constant_time_eq(p.as_bytes(), password.as_bytes()))
    })
}

/// `Basic base64(user:password)` into its two parts.
pub fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Compares credentials in a time that does not depend on where they differ: every byte up
/// to the longer length is looked at (a length mismatch runs the same loop instead of
/// returning early), and `black_box` keeps the optimizer from turning the accumulation into an
/// early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// Whether a browser's `Origin` header names the host the request was sent to. Admin POSTs
/// from another origin are refused: a page elsewhere must not be able to drive the
/// browser's cached credentials (cross-site request forgery).
pub fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (std::str::from_utf8(origin), host.map(std::str::from_utf8))
    else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        // `Origin: null` (sandboxed frames, file://) is not the stats page.
        return false;
    };
    let authority = authority.trim_end_matches('/');
    let host = host.trim();
    if authority.eq_ignore_ascii_case(host) {
        return true;
    }
    // `Host: example:80` vs `Origin: http://example` (default ports are left out).
    let strip = |s: &str, port: &str| s.strip_suffix(port).map(str::to_ascii_lowercase);
    let origin_default = origin.starts_with("http://")
        && strip(host, ":80").as_deref() == Some(&authority.to_ascii_lowercase())
        || origin.starts_with("https://")
            && strip(host, ":443").as_deref() == Some(&authority.to_ascii_lowercase());
    origin_default
}

/// Escapes a realm for `WWW-Authenticate: Basic realm="..."`.
pub fn quote_realm(realm: &str) -> String {
    let mut out = String::with_capacity(realm.len() + 2);
    out.push('"');
    for c in realm.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // A header value cannot hold control characters.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_after_the_uri() {
        assert_eq!(parse_options("").output, Output::Page);
        assert_eq!(parse_options(";csv").output, Output::Csv);
        let o = parse_options(";csv;norefresh;up");
        assert_eq!(o.output, Output::Csv);
        assert!(o.norefresh && o.up && !o.no_maint);
        assert_eq!(parse_options(";json").output, Output::Json);
        assert_eq!(parse_options(";typed").output, Output::Typed);
        assert_eq!(parse_options(";info;json").output, Output::InfoJson);
        assert_eq!(parse_options(";json;info").output, Output::InfoJson);
        assert_eq!(parse_options(";data;no-maint").output, Output::Data);
        assert_eq!(parse_options(";st=DONE").status, Some("DONE"));
        // Unknown codes and options are ignored, not echoed into the page.
        assert_eq!(parse_options(";st=<script>").status, None);
        assert_eq!(parse_options(";frobnicate").output, Output::Page);
        // What precedes the first ';' is part of the path, not an option.
        assert_eq!(parse_options("csv").output, Output::Page);
        assert_eq!(parse_options("/x;csv").output, Output::Csv);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("a%20b+c", false).unwrap(), "a b+c");
        assert_eq!(percent_decode("%23", true).unwrap(), "#");
        assert!(percent_decode("%", true).is_err());
        assert!(percent_decode("%4", true).is_err());
        assert!(percent_decode("%zz", true).is_err());
        assert!(percent_decode("%ff", true).is_err());
        // A multi-byte character split by the escape boundary must not panic.
        assert!(percent_decode("%é", true).is_err());
    }

    #[test]
    fn pairs() {
        let p = parse_pairs("s=s1&s=s2&action=drain&b=%233&&flag").unwrap();
        assert_eq!(
            p,
            vec![
                ("s".into(), Some("s1".into())),
                ("s".into(), Some("s2".into())),
                ("action".into(), Some("drain".into())),
                ("b".into(), Some("#3".into())),
                ("flag".into(), None),
            ]
        );
        assert!(parse_pairs("a=%").is_err());
        assert_eq!(parse_pairs("").unwrap(), vec![]);
    }

    #[test]
    fn basic_auth() {
        let auths = vec![("admin".to_string(), "s3cret:x".to_string())];
        let header = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(
            Some(header("admin:s3cret:x").as_bytes()),
            &auths
        ));
        // The scheme is case-insensitive.
        let lower = header("admin:s3cret:x").replacen("Basic", "basic", 1);
        assert!(authorized(Some(lower.as_bytes()), &auths));
        assert!(!authorized(Some(header("admin:wrong").as_bytes()), &auths));
        assert!(!authorized(Some(header("admin").as_bytes()), &auths));
        assert!(!authorized(Some(b"Basic !!!"), &auths));
        assert!(!authorized(Some(b"Bearer abc"), &auths));
        assert!(!authorized(Some(b"Basic"), &auths));
        assert!(!authorized(Some(&[0xff, 0xfe]), &auths));
        assert!(!authorized(None, &auths));
        assert!(!authorized(Some(header("admin:s3cret:x").as_bytes()), &[]));
    }

    #[test]
    fn constant_time_comparison_is_exact() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        // A difference anywhere, a prefix, an extension (even by a NUL byte): not equal.
        assert!(!constant_time_eq(b"s3cret", b"x3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3crex"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret\0"));
        assert!(!constant_time_eq(b"", b"\0"));
    }

    #[test]
    fn every_stats_user_is_checked() {
        let auths = vec![
            ("alice".to_string(), "one".to_string()),
            ("bob".to_string(), "two".to_string()),
        ];
        let header = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(Some(header("alice:one").as_bytes()), &auths));
        assert!(authorized(Some(header("bob:two").as_bytes()), &auths));
        // One user's password does not open another's account.
        assert!(!authorized(Some(header("alice:two").as_bytes()), &auths));
        assert!(!authorized(Some(header("bob:one").as_bytes()), &auths));
    }

    #[test]
    fn origins() {
        assert!(same_origin(
            b"http://127.0.0.1:8404",
            Some(b"127.0.0.1:8404")
        ));
        assert!(same_origin(b"http://Example.com", Some(b"example.com")));
        assert!(same_origin(b"http://example.com", Some(b"example.com:80")));
        assert!(!same_origin(
            b"http://evil.example",
            Some(b"127.0.0.1:8404")
        ));
        assert!(!same_origin(b"null", Some(b"127.0.0.1:8404")));
        assert!(!same_origin(b"http://127.0.0.1:8404", None));
        assert!(!same_origin(&[0xff], Some(b"x")));
    }

    #[test]
    fn realm_quoting() {
        assert_eq!(quote_realm("HAProxy Statistics"), "\"HAProxy Statistics\"");
        assert_eq!(quote_realm("a\"b\\c\nd"), "\"a\\\"b\\\\c d\"");
    }
}
