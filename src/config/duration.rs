//! Durations as the config file writes them: `90s`, `15m`, `1h`, `2d`,
//! `500ms`, and sums such as `1h30m`.
//!
//! Pure string handling; knows nothing of files or of which key it serves.

use std::time::Duration;

const UNITS: &str = "ms, s, m, h, d";

/// Parse `90s`, `15m`, `1h`, `2d`, `500ms` or a sum of them (`1h30m`,
/// `1d 12h`). A bare number is refused: `ban_time = "3600"` could mean
/// seconds or milliseconds, and guessing wrong bans for 1000 times too long.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!(
            "empty duration: write a number with a unit, e.g. \"90s\", \"15m\", \"1h\" or \"2d\" (units: {UNITS})"
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit: add one, e.g. \"{text}s\" for seconds (units: {UNITS})"
        ));
    }

    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}` (e.g. \"1h30m\")"
            ));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let per_unit_ms: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "`{text}`: the number {number} has no unit (units: {UNITS})"
                ));
            }
            other => {
                return Err(format!("`{text}`: unknown unit `{other}` (units: {UNITS})"));
            }
        };
        // More than 39 digits cannot fit u128; anything that large is out of
        // every range a caller accepts anyway.
        let n: u128 = number
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        total_ms = n
            .checked_mul(per_unit_ms)
            .and_then(|ms| ms.checked_add(total_ms))
            .ok_or_else(|| format!("`{text}` is too large"))?;
        rest = after.trim_start();
    }
    let ms = u64::try_from(total_ms).map_err(|_| format!("`{text}` is too large"))?;
    Ok(Duration::from_millis(ms))
}

/// The shortest spelling `parse_duration` reads back to the same value,
/// which is also how nft prints a timeout: `86400s` -> `1d`, `5400s` ->
/// `1h30m`. The one way a duration is shown: log lines, `list`, `status`,
/// the rendered ruleset, error messages that quote limits.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_nft_prints_durations() {
        assert_eq!(format_duration(Duration::from_secs(86400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn single_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 7s "), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn sums() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d 12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("1m1s1ms"), Ok(Duration::from_millis(61_001)));
    }

    #[test]
    fn bare_number_asks_for_a_unit() {
        let e = parse_duration("3600").unwrap_err();
        assert!(e.contains("no unit") && e.contains("3600s"), "{e}");
        let e = parse_duration("1h30").unwrap_err();
        assert!(e.contains("30 has no unit"), "{e}");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", " ", "h", "1x", "1.5h", "-1s", "1 h", "s1", "1hh", "1h,2m", "forever",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse_duration("5y").unwrap_err();
        assert!(e.contains("unknown unit `y`"), "{e}");
    }

    #[test]
    fn huge_values_are_errors_not_panics() {
        assert!(parse_duration("99999999999999999999999999999999999999999d").is_err());
        assert!(parse_duration("999999999999999999999d").is_err());
        assert!(parse_duration("18446744073709551615ms").is_ok());
        assert!(parse_duration("18446744073709551616ms").is_err());
    }

    #[test]
    fn format_round_trips() {
        for s in ["1d", "1h30m", "90ms", "1d1h1m1s1ms", "0s", "365d"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}
