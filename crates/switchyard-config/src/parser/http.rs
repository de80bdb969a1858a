//! HTTP-mode keywords: `option forwardfor` and `cookie`.

use std::net::IpAddr;

use crate::model::{Cookie, CookieMode, ForwardFor, Span};
use crate::units::parse_duration;

/// `option forwardfor [except NET] [header NAME] [if-none]` (arguments after the option name).
pub(super) fn parse_forwardfor(args: &[String]) -> Result<ForwardFor, String> {
    let mut forward = ForwardFor {
        except: None,
        header: "X-Forwarded-For".to_string(),
        if_none: false,
    };
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1);
        match (args[i].as_str(), value) {
            ("except", Some(net)) => {
                forward.except = Some(
                    parse_network(net).map_err(|e| format!("'option forwardfor except': {e}"))?,
                );
                i += 2;
            }
            ("header", Some(name)) if valid_header_name(name) => {
                forward.header = name.clone();
                i += 2;
            }
            ("header", Some(name)) => {
                return Err(format!(
                    "'option forwardfor header': invalid header name '{name}'"
                ))
            }
            ("if-none", _) => {
                forward.if_none = true;
                i += 1;
            }
            (word @ ("except" | "header"), None) => {
                return Err(format!("'option forwardfor {word}' expects a value"))
            }
            (other, _) => {
                return Err(format!(
                    "'option forwardfor': unexpected '{other}' (expected except, header or if-none)"
                ))
            }
        }
    }
    Ok(forward)
}

/// `ADDR[/LEN]` with an IPv4 or IPv6 address; a bare address is a host network.
pub(crate) fn parse_network(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{text}' is not an address or network (expected ADDR[/LEN])"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => match len.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("'{text}': prefix length must be 0..={max}")),
        },
    };
    Ok((ip, len))
}

/// RFC 9110 token characters.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `cookie NAME insert|rewrite|prefix [options]` (the whole line). Options HAProxy knows and
/// Switchyard does not apply (`maxidle`, `maxlife`, `dynamic`) are returned as warnings.
pub(super) fn parse_cookie(w: &[String], span: &Span) -> Result<(Cookie, Vec<String>), String> {
    let Some(name) = w.get(1) else {
        return Err("'cookie' expects a cookie name".into());
    };
    if !valid_header_name(name) || name.contains('=') {
        return Err(format!("'cookie': invalid cookie name '{name}'"));
    }
    let mut mode = None;
    let mut cookie = Cookie {
        span: span.clone(),
        name: name.clone(),
        mode: CookieMode::Insert,
        indirect: false,
        nocache: false,
        postonly: false,
        preserve: false,
        httponly: false,
        secure: false,
        domains: Vec::new(),
        attrs: Vec::new(),
    };
    let mut warnings = Vec::new();
    let mut set_mode = |m: CookieMode, word: &str| match mode {
        Some(_) => Err(format!(
            "'cookie': '{word}' conflicts with another of insert, rewrite or prefix"
        )),
        None => {
            mode = Some(m);
            Ok(())
        }
    };
    let mut i = 2;
    while i < w.len() {
        let word = w[i].as_str();
        let value = w.get(i + 1);
        match word {
            "insert" => set_mode(CookieMode::Insert, word)?,
            "rewrite" => set_mode(CookieMode::Rewrite, word)?,
            "prefix" => set_mode(CookieMode::Prefix, word)?,
            "indirect" => cookie.indirect = true,
            "nocache" => cookie.nocache = true,
            "postonly" => cookie.postonly = true,
            "preserve" => cookie.preserve = true,
            "httponly" => cookie.httponly = true,
            "secure" => cookie.secure = true,
            "domain" | "attr" | "maxidle" | "maxlife" => {
                let Some(value) = value else {
                    return Err(format!("'cookie {word}' expects a value"));
                };
                match word {
                    "domain" => cookie.domains.push(value.clone()),
                    "attr" if value.bytes().any(|b| b == b';' || b.is_ascii_control()) => {
                        return Err(format!("'cookie attr': invalid attribute '{value}'"))
                    }
                    "attr" => cookie.attrs.push(value.clone()),
                    _ => {
                        parse_duration(value).map_err(|e| format!("'cookie {word}': {e}"))?;
                        warnings.push(format!("cookie {word}"));
                    }
                }
                i += 1;
            }
            "dynamic" => warnings.push("cookie dynamic".into()),
            other => {
                return Err(format!(
                    "'cookie': unexpected '{other}' (expected insert, rewrite, prefix, indirect, nocache, postonly, preserve, httponly, secure, domain, attr, maxidle, maxlife or dynamic)"
                ))
            }
        }
        i += 1;
    }
    // HAProxy's default mode is rewrite when none is given.
    cookie.mode = mode.unwrap_or(CookieMode::Rewrite);
    if cookie.mode != CookieMode::Insert
        && (cookie.indirect || cookie.nocache || cookie.postonly || cookie.preserve)
    {
        return Err(
            "'cookie': indirect, nocache, postonly and preserve apply only with 'insert'".into(),
        );
    }
    Ok((cookie, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn forwardfor_arguments() {
        let f = parse_forwardfor(&words("except 127.0.0.0/8 header X-Client if-none")).unwrap();
        assert_eq!(f.except, Some(("127.0.0.0".parse().unwrap(), 8)));
        assert_eq!(f.header, "X-Client");
        assert!(f.if_none);
        let f = parse_forwardfor(&[]).unwrap();
        assert_eq!(
            (f.except, f.header.as_str(), f.if_none),
            (None, "X-Forwarded-For", false)
        );
        assert!(parse_forwardfor(&words("except 10.0.0.0/33")).is_err());
        assert!(parse_forwardfor(&words("header")).is_err());
        assert!(parse_forwardfor(&words("header a:b")).is_err());
        assert!(parse_forwardfor(&words("sideways")).is_err());
        assert_eq!(parse_network("::1").unwrap().1, 128);
    }

    #[test]
    fn cookie_lines() {
        let span = Span {
            file: "t.cfg".into(),
            line: 1,
        };
        let (c, w) = parse_cookie(
            &words("cookie SRV insert indirect nocache httponly secure domain .x.org attr SameSite=Lax maxidle 30m"),
            &span,
        )
        .unwrap();
        assert_eq!(c.mode, CookieMode::Insert);
        assert!(c.indirect && c.nocache && c.httponly && c.secure);
        assert_eq!(c.domains, [".x.org"]);
        assert_eq!(c.attrs, ["SameSite=Lax"]);
        assert_eq!(w, ["cookie maxidle"]);
        assert_eq!(
            parse_cookie(&words("cookie J"), &span).unwrap().0.mode,
            CookieMode::Rewrite
        );
        assert_eq!(
            parse_cookie(&words("cookie J prefix"), &span)
                .unwrap()
                .0
                .mode,
            CookieMode::Prefix
        );
        for bad in [
            "cookie",
            "cookie J insert rewrite",
            "cookie J prefix indirect",
            "cookie J insert domain",
            "cookie J insert attr a;b",
            "cookie J insert sideways",
            "cookie J=x insert",
        ] {
            assert!(parse_cookie(&words(bad), &span).is_err(), "{bad}");
        }
    }
}
