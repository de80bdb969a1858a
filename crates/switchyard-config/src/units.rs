//! Number-with-unit values as HAProxy writes them (`10s`, `500ms`, `16k`).

use std::time::Duration;

/// Parses an HAProxy time value: an unsigned integer followed by `us`, `ms`, `s`, `m`, `h` or
/// `d`. Without a unit the value is in milliseconds, which is HAProxy's default for every
/// timeout and check interval.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = split_number(text)?;
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}': number too large"))?;
    // Multiplier in microseconds, so `us` stays exact.
    let micros_per_unit: u64 = match unit {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60 * 1_000_000,
        "h" => 3_600 * 1_000_000,
        "d" => 86_400 * 1_000_000,
        _ => {
            return Err(format!(
                "'{text}': unknown time unit '{unit}' (expected us, ms, s, m, h or d)"
            ))
        }
    };
    let micros = value
        .checked_mul(micros_per_unit)
        .ok_or_else(|| format!("'{text}': value too large"))?;
    Ok(Duration::from_micros(micros))
}

/// Parses a size: an unsigned integer optionally followed by `k`, `m` or `g` (powers of 1024,
/// case-insensitive), as HAProxy accepts for buffer and cache sizes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(text)?;
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}': number too large"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}': unknown size unit '{unit}' (expected k, m or g)"
            ))
        }
    };
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("'{text}': value too large"))
}

fn split_number(text: &str) -> Result<(&str, &str), String> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 {
        return Err(if text.is_empty() {
            "missing value".to_string()
        } else {
            format!("'{text}': expected a number")
        });
    }
    Ok(text.split_at(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            "s",
            "10x",
            "-5s",
            "1.5s",
            "10 s",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("16K"), Ok(16 * 1024));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "k", "1t", "1kb", "-1", "99999999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
    }
}
