//! Splits one configuration line into words the way HAProxy 2.x does.
//!
//! * `#` starts a comment unless quoted or escaped;
//! * words are separated by spaces and tabs;
//! * `"..."` groups a word, with backslash escapes and `$VAR` / `${VAR}` expansion inside;
//! * `'...'` groups a word literally (no escapes, no expansion);
//! * outside quotes, `\ `, `\#`, `\\`, `\"`, `\'`, `\$`, `\r`, `\n`, `\t` and `\xHH` are
//!   escapes, and environment variables are expanded too;
//! * `${VAR-default}` uses `default` when `VAR` is unset.

/// Returns the words of `line`, or an error message (the caller adds the file:line).
/// `env` looks up variables so tests and `setenv` can supply their own values.
pub(crate) fn split_line(
    line: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    // A word may be empty yet present (`""`), so track it separately from `word.is_empty()`.
    let mut in_word = false;
    let mut i = 0;
    #[derive(PartialEq)]
    enum Quote {
        None,
        Double,
        Single,
    }
    let mut quote = Quote::None;

    while i < chars.len() {
        let c = chars[i];
        match quote {
            Quote::Single => {
                if c == '\'' {
                    quote = Quote::None;
                } else {
                    word.push(c);
                }
                i += 1;
            }
            Quote::Double | Quote::None => {
                if quote == Quote::None {
                    if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
                        if in_word {
                            words.push(std::mem::take(&mut word));
                            in_word = false;
                        }
                        i += 1;
                        continue;
                    }
                    if c == '#' {
                        break;
                    }
                    if c == '\'' {
                        quote = Quote::Single;
                        in_word = true;
                        i += 1;
                        continue;
                    }
                }
                in_word = true;
                match c {
                    '"' => {
                        quote = if quote == Quote::Double {
                            Quote::None
                        } else {
                            Quote::Double
                        };
                        i += 1;
                    }
                    '\\' => {
                        i += 1;
                        i += escape(&chars[i..], &mut word);
                    }
                    '$' => {
                        i += 1;
                        i += expand(&chars[i..], &mut word, env)?;
                    }
                    _ => {
                        word.push(c);
                        i += 1;
                    }
                }
            }
        }
    }
    match quote {
        Quote::Double => return Err("unterminated double quote".to_string()),
        Quote::Single => return Err("unterminated single quote".to_string()),
        Quote::None => {}
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Handles the character(s) after a backslash; returns how many were consumed.
fn escape(rest: &[char], out: &mut String) -> usize {
    let Some(&c) = rest.first() else {
        // A trailing backslash has nothing to escape: keep it.
        out.push('\\');
        return 0;
    };
    match c {
        ' ' | '#' | '\\' | '"' | '\'' | '$' => out.push(c),
        'r' => out.push('\r'),
        'n' => out.push('\n'),
        't' => out.push('\t'),
        'x' => {
            let hex: String = rest.iter().skip(1).take(2).collect();
            if hex.len() == 2 {
                if let Ok(b) = u8::from_str_radix(&hex, 16) {
                    out.push(char::from(b));
                    return 3;
                }
            }
            out.push('\\');
            out.push('x');
        }
        // HAProxy keeps unknown escapes as written (regexes rely on it).
        other => {
            out.push('\\');
            out.push(other);
        }
    }
    1
}

/// Expands a variable reference after `$`; returns how many characters were consumed.
fn expand(
    rest: &[char],
    out: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<usize, String> {
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match rest.first() {
        Some('{') => {
            let Some(close) = rest.iter().position(|&c| c == '}') else {
                return Err("missing closing '}' in '${...}' variable reference".to_string());
            };
            let inner: String = rest[1..close].iter().collect();
            let (name, default) = match inner.find('-') {
                Some(dash) => (&inner[..dash], Some(&inner[dash + 1..])),
                None => (inner.as_str(), None),
            };
            if name.is_empty() || !name.chars().all(is_name) {
                return Err(format!("invalid variable name '{name}' in '${{{inner}}}'"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                // HAProxy expands unset variables to nothing.
                (None, None) => {}
            }
            Ok(close + 1)
        }
        Some(&c) if is_name_start(c) => {
            let len = rest.iter().take_while(|&&c| is_name(c)).count();
            let name: String = rest[..len].iter().collect();
            if let Some(v) = env(&name) {
                out.push_str(&v);
            }
            Ok(len)
        }
        // A lone `$` (e.g. in a regex) is literal.
        _ => {
            out.push('$');
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db1".into()),
            "PORT" => Some("5432".into()),
            "SPACED" => Some("a b".into()),
            _ => None,
        }
    }

    fn split(line: &str) -> Vec<String> {
        split_line(line, &env).unwrap()
    }

    #[test]
    fn words_and_comments() {
        assert_eq!(
            split("  server  s1\t10.0.0.1:5432 check  "),
            ["server", "s1", "10.0.0.1:5432", "check"]
        );
        assert_eq!(split("bind :80 # comment here"), ["bind", ":80"]);
        assert_eq!(split("# whole line"), Vec::<String>::new());
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("a#b"), ["a"]);
        assert_eq!(split("maxconn 10\r"), ["maxconn", "10"]);
    }

    #[test]
    fn double_quotes() {
        assert_eq!(split(r#"log-tag "my tag""#), ["log-tag", "my tag"]);
        assert_eq!(
            split(r#"x "a # not comment" y"#),
            ["x", "a # not comment", "y"]
        );
        assert_eq!(split(r#"x "say \"hi\"""#), ["x", r#"say "hi""#]);
        assert_eq!(split(r#"x """#), ["x", ""]);
        assert_eq!(split(r#"x ab"cd"ef"#), ["x", "abcdef"]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(split(r"x '$HOST \n # \'"), ["x", r"$HOST \n # \"]);
        assert_eq!(split("x ''"), ["x", ""]);
    }

    #[test]
    fn backslash_escapes() {
        assert_eq!(split(r"x a\ b"), ["x", "a b"]);
        assert_eq!(split(r"x a\#b"), ["x", "a#b"]);
        assert_eq!(split(r"x a\\b"), ["x", r"a\b"]);
        assert_eq!(split(r"x \x41\t"), ["x", "A\t"]);
        assert_eq!(split(r"x \$HOST"), ["x", "$HOST"]);
        assert_eq!(split(r"x ^\d+$"), ["x", r"^\d+$"]);
        assert_eq!(split("x a\\"), ["x", "a\\"]);
    }

    #[test]
    fn env_expansion() {
        assert_eq!(split("server s1 $HOST:$PORT"), ["server", "s1", "db1:5432"]);
        assert_eq!(
            split("server s1 ${HOST}:${PORT}"),
            ["server", "s1", "db1:5432"]
        );
        assert_eq!(split(r#"x "${HOST}x""#), ["x", "db1x"]);
        // Expansion does not split words.
        assert_eq!(split("x $SPACED"), ["x", "a b"]);
        assert_eq!(split("x ${UNSET}y"), ["x", "y"]);
        assert_eq!(split("x ${UNSET-def}"), ["x", "def"]);
        assert_eq!(split("x ${HOST-def}"), ["x", "db1"]);
        assert_eq!(split("x $"), ["x", "$"]);
        assert_eq!(split("x $1"), ["x", "$1"]);
    }

    #[test]
    fn errors() {
        assert!(split_line(r#"x "abc"#, &env)
            .unwrap_err()
            .contains("unterminated double quote"));
        assert!(split_line("x 'abc", &env)
            .unwrap_err()
            .contains("unterminated single quote"));
        assert!(split_line("x ${HOST", &env).unwrap_err().contains("'}'"));
        assert!(split_line("x ${}", &env).is_err());
        assert!(split_line("x ${a b}", &env).is_err());
    }
}
