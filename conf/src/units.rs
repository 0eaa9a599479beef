//! Sizes and durations as operators write them: `"64KiB"`, `"1MB"`, `"500ms"`, `"2m"`.
//!
//! Pure string → number functions, so the loader can attach the key and file:line:column to
//! whatever they reject. Units are explicit: `KB` is 1000 bytes and `KiB` is 1024; a bare `k`,
//! `m` or `g` is refused as ambiguous rather than guessed (nginx reads `1m` as MiB, others as MB).

use std::time::Duration;

/// The units a size may carry, matched case-insensitively, with their multipliers.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1000),
    ("kib", 1 << 10),
    ("mb", 1000 * 1000),
    ("mib", 1 << 20),
    ("gb", 1000 * 1000 * 1000),
    ("gib", 1 << 30),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("tib", 1 << 40),
];

/// Parse a size: decimal digits, optional spaces, then an optional unit from [`SIZE_UNITS`].
///
/// The error is a sentence fragment meant to follow `key: `.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let expected =
        "expected whole bytes with an optional unit: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB";
    if digits.is_empty() {
        return Err(format!("invalid size {text:?}: {expected}"));
    }
    let unit = unit.trim_start().to_ascii_lowercase();
    let Some(&(_, multiplier)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
        if matches!(unit.as_str(), "k" | "m" | "g" | "t") {
            let upper = unit.to_ascii_uppercase();
            return Err(format!(
                "invalid size {text:?}: ambiguous unit {unit:?}, write {upper}iB (powers of 1024) or {upper}B (powers of 1000)"
            ));
        }
        return Err(format!("invalid size {text:?}: {expected}"));
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Parse a duration in humantime's syntax (`"10s"`, `"500ms"`, `"1m 30s"`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?}: {e} (write e.g. \"10s\", \"500ms\", \"2m\")")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("512", Some(512)),
            ("512B", Some(512)),
            ("64KiB", Some(64 * 1024)),
            ("64 KiB", Some(64 * 1024)),
            ("64kib", Some(64 * 1024)),
            ("1MiB", Some(1 << 20)),
            ("1MB", Some(1_000_000)),
            ("1KB", Some(1000)),
            ("2GiB", Some(2 << 30)),
            ("3GB", Some(3_000_000_000)),
            ("1TiB", Some(1 << 40)),
            (" 7 ", Some(7)),
            ("", None),
            ("KiB", None),
            ("-1", None),
            ("1.5MiB", None),
            ("1XB", None),
            ("1m", None),
            ("1 k", None),
            ("1MiBs", None),
            ("99999999999999999999", None),
            ("20000000TiB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).ok(), *want, "parse_size({text:?})");
        }
    }

    #[test]
    fn size_errors_explain_themselves() {
        let ambiguous = parse_size("1m").unwrap_err();
        assert!(
            ambiguous.contains("MiB") && ambiguous.contains("MB"),
            "{ambiguous}"
        );
        let unknown = parse_size("1XB").unwrap_err();
        assert!(
            unknown.starts_with("invalid size \"1XB\": expected"),
            "{unknown}"
        );
        assert!(
            parse_size("20000000TiB")
                .unwrap_err()
                .ends_with("too large")
        );
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("10s", Some(Duration::from_secs(10))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2m", Some(Duration::from_secs(120))),
            ("1m 30s", Some(Duration::from_secs(90))),
            ("0", Some(Duration::ZERO)),
            ("10", None),
            ("ten seconds", None),
            ("", None),
            ("5 parsecs", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), *want, "parse_duration({text:?})");
        }
        assert!(
            parse_duration("10")
                .unwrap_err()
                .starts_with("invalid duration \"10\": ")
        );
    }
}
