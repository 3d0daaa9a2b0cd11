//! Sizes (`8MiB`, `10GB`) and durations (`500ms`, `5m`) as people type them, for options,
//! fstab `-o` values and the server's fault settings alike, and back into that form for
//! the defaults `--help` shows.

use std::time::Duration;

/// Parse a size: a plain byte count or a number with a unit, binary (`KiB`, `MiB`, `GiB`,
/// `TiB`, also `K`, `M`, `G`, `T`) or decimal (`KB`, `MB`, `GB`, `TB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit in {s:?} (use e.g. 8MiB, 512K, 10GB)"
            ))
        }
    };
    let value: f64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((value * mult as f64).round() as u64)
}

/// Parse a duration: seconds, or a number with `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "unknown duration unit in {s:?} (use e.g. 500ms, 60s, 5m, 1h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A size the way [`parse_size`] reads it back exactly: in the largest binary unit that
/// divides it (`8MiB`, `100KiB`), else in bytes.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes % unit == 0)
        .map_or_else(
            || bytes.to_string(),
            |(unit, name)| format!("{}{name}", bytes / unit),
        )
}

/// A duration the way [`parse_duration`] reads it back: whole seconds as `60s`, anything
/// else in milliseconds.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("100KiB"), Ok(100 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn formatted_defaults_parse_back() {
        for n in [
            8 << 20,
            100 << 10,
            10 << 30,
            5 << 30,
            1 << 40,
            1536 << 20,
            0,
            1500,
        ] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{}", format_size(n));
        }
        assert_eq!(format_size(8 << 20), "8MiB");
        assert_eq!(format_size(1500), "1500");
        for d in [
            Duration::from_secs(60),
            Duration::from_millis(500),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
    }
}
