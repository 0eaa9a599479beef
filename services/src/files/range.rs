//! Byte-range requests (RFC 9110 §14), as plain functions of the header and the length.
//!
//! [`parse`] turns a `Range` field value into range specs, or `None` when the field must be
//! ignored (another unit, bad syntax, absurdly many specs). [`evaluate`] resolves the specs
//! against a representation length: serve it whole, refuse (416), or serve a sorted, coalesced
//! list of byte ranges. Coalescing and the `max_ranges` cap keep a request from making us send
//! more than the file, or a large response out of many tiny overlapping pieces (§14.2's
//! "denial-of-service" note).
//!
//! Nothing here reads a file or builds a response; `multipart` frames the result.

use std::ops::Range;

/// More specs than this in one header and the whole header is ignored, before any allocation
/// proportional to it. Legitimate clients (video seeking, download resumers, PDF readers) ask
/// for a handful.
pub const MAX_SPECS: usize = 256;

/// One `range-spec` (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`, inclusive.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// What to send for a request that carried a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Send the whole representation with 200.
    Full,
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
    /// 206: one range (plain body) or several (multipart/byteranges). Sorted, disjoint,
    /// non-adjacent, non-empty, each within the representation.
    Partial(Vec<Range<u64>>),
}

/// Parse a `Range` field value. `None` means "ignore the field" (RFC 9110 §14.2: "A server MAY
/// ignore the Range header field"; an unknown unit or invalid syntax must be ignored).
pub fn parse(value: &[u8]) -> Option<Vec<RangeSpec>> {
    // RFC 9110 §14.1: ranges-specifier = range-unit "=" range-set; range units are
    // case-insensitive, and "bytes" is the only one we know.
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (&value[..eq], &value[eq + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    // Refuse absurd headers cheaply: count list separators before allocating anything.
    if set.iter().filter(|&&b| b == b',').count() >= MAX_SPECS {
        return None;
    }
    let mut specs = Vec::new();
    // range-set = 1#range-spec; the list syntax (§5.6.1) allows empty elements and OWS.
    for element in set.split(|&b| b == b',') {
        let element = element.trim_ascii();
        if element.is_empty() {
            continue;
        }
        specs.push(parse_spec(element)?);
    }
    if specs.is_empty() {
        return None;
    }
    Some(specs)
}

fn parse_spec(spec: &[u8]) -> Option<RangeSpec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        // suffix-range = "-" suffix-length
        return Some(RangeSpec::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(RangeSpec::From(first));
    }
    let last = parse_digits(last)?;
    // §14.1.1: "A range-spec is invalid if the value of last-pos is less than first-pos."
    if last < first {
        return None;
    }
    Some(RangeSpec::FromTo(first, last))
}

/// `1*DIGIT`, saturating: a position past any real file is still a valid position.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Resolve specs against a representation of `len` bytes.
pub fn evaluate(specs: &[RangeSpec], len: u64, max_ranges: usize) -> RangeOutcome {
    if len == 0 {
        // §14.1.1: "If the selected representation has zero length, the only satisfiable form
        // of range-spec is a suffix-range with a non-zero suffix-length." There is no byte to
        // put in a Content-Range, so that case is answered with the (empty) whole.
        let any_suffix = specs
            .iter()
            .any(|s| matches!(s, RangeSpec::Suffix(n) if *n > 0));
        return if any_suffix {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    }
    let mut ranges: Vec<Range<u64>> = specs
        .iter()
        .filter_map(|spec| satisfiable(*spec, len))
        .collect();
    if ranges.is_empty() {
        // §15.5.17: none of the ranges overlap the current extent → 416.
        return RangeOutcome::Unsatisfiable;
    }
    // §14.2: a server MAY coalesce ranges that overlap or are adjacent, and MAY ignore a
    // request for many ranges. Coalesce first, then cap.
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() > max_ranges {
        return RangeOutcome::Full;
    }
    RangeOutcome::Partial(merged)
}

/// The bytes a spec selects, clipped to the representation, or `None` if it is unsatisfiable
/// (§14.1.1: an int-range is satisfiable when first-pos < length; a suffix-range when its
/// length is non-zero; a last-pos at or past the end means "to the end").
fn satisfiable(spec: RangeSpec, len: u64) -> Option<Range<u64>> {
    match spec {
        RangeSpec::FromTo(first, last) if first < len => {
            Some(first..last.saturating_add(1).min(len))
        }
        RangeSpec::From(first) if first < len => Some(first..len),
        RangeSpec::Suffix(n) if n > 0 => Some(len.saturating_sub(n)..len),
        _ => None,
    }
}

/// `Content-Range` for a part (§14.4): `bytes first-last/complete-length`.
pub fn content_range(range: &Range<u64>, len: u64) -> String {
    format!("bytes {}-{}/{}", range.start, range.end - 1, len)
}

/// `Content-Range` for a 416 (§14.4): `bytes */complete-length`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
mod tests {
    use super::RangeSpec::*;
    use super::*;

    /// `Partial` of half-open `(start, end)` pairs.
    fn p(ranges: &[(u64, u64)]) -> RangeOutcome {
        RangeOutcome::Partial(ranges.iter().map(|&(a, b)| a..b).collect())
    }

    #[test]
    fn parse_table() {
        let table: &[(&str, Option<&[RangeSpec]>)] = &[
            ("bytes=0-499", Some(&[FromTo(0, 499)])),
            ("bytes=500-", Some(&[From(500)])),
            ("bytes=-500", Some(&[Suffix(500)])),
            ("BYTES=0-0", Some(&[FromTo(0, 0)])),
            (
                "Bytes=0-1, 5-6 ,-2",
                Some(&[FromTo(0, 1), FromTo(5, 6), Suffix(2)]),
            ),
            ("bytes=0-1,,2-3,", Some(&[FromTo(0, 1), FromTo(2, 3)])),
            (
                "bytes=0-99999999999999999999999",
                Some(&[FromTo(0, u64::MAX)]),
            ),
            ("bytes=99999999999999999999999-", Some(&[From(u64::MAX)])),
            // ignored: other units, bad syntax
            ("items=0-1", None),
            ("bytes 0-1", None),
            ("bytes=", None),
            ("bytes=,", None),
            ("bytes=1", None),
            ("bytes=-", None),
            ("bytes=a-b", None),
            ("bytes=1-a", None),
            ("bytes=5-4", None),
            ("bytes=0-1,5-4", None),
            ("bytes=--1", None),
            ("bytes=+1-2", None),
            ("bytes=0x1-2", None),
            ("bytes=1 - 2", None),
            ("", None),
        ];
        for (value, want) in table {
            assert_eq!(parse(value.as_bytes()).as_deref(), *want, "{value:?}");
        }
    }

    #[test]
    fn absurd_headers_are_ignored() {
        let many = format!("bytes={}", vec!["0-0"; MAX_SPECS + 1].join(","));
        assert_eq!(parse(many.as_bytes()), None);
        let commas = format!("bytes=0-0{}", ",".repeat(100_000));
        assert_eq!(parse(commas.as_bytes()), None);
        let enough = format!("bytes={}", vec!["0-0"; MAX_SPECS].join(","));
        assert_eq!(parse(enough.as_bytes()).map(|v| v.len()), Some(MAX_SPECS));
    }

    #[test]
    fn evaluate_table() {
        use RangeOutcome::*;
        let table: &[(&[RangeSpec], u64, RangeOutcome)] = &[
            (&[FromTo(0, 499)], 1000, p(&[(0, 500)])),
            (&[FromTo(0, 0)], 1000, p(&[(0, 1)])),
            (&[FromTo(999, 999)], 1000, p(&[(999, 1000)])),
            (&[FromTo(500, 5000)], 1000, p(&[(500, 1000)])),
            (&[FromTo(0, u64::MAX)], 1000, p(&[(0, 1000)])),
            (&[From(900)], 1000, p(&[(900, 1000)])),
            (&[Suffix(100)], 1000, p(&[(900, 1000)])),
            (&[Suffix(5000)], 1000, p(&[(0, 1000)])),
            // unsatisfiable
            (&[FromTo(1000, 1001)], 1000, Unsatisfiable),
            (&[From(1000)], 1000, Unsatisfiable),
            (&[From(u64::MAX)], 1000, Unsatisfiable),
            (&[Suffix(0)], 1000, Unsatisfiable),
            (&[From(2000), Suffix(0)], 1000, Unsatisfiable),
            // one satisfiable among unsatisfiable ones is served alone
            (&[From(2000), FromTo(1, 2)], 1000, p(&[(1, 3)])),
            // several: sorted, overlapping and adjacent ranges coalesced
            (
                &[FromTo(500, 599), FromTo(0, 99)],
                1000,
                p(&[(0, 100), (500, 600)]),
            ),
            (&[FromTo(0, 99), FromTo(100, 199)], 1000, p(&[(0, 200)])),
            (
                &[FromTo(0, 99), FromTo(50, 149), Suffix(10)],
                1000,
                p(&[(0, 150), (990, 1000)]),
            ),
            (
                &[FromTo(0, 9), FromTo(0, 9), FromTo(0, 9)],
                1000,
                p(&[(0, 10)]),
            ),
            (&[From(0), FromTo(5, 9), Suffix(3)], 1000, p(&[(0, 1000)])),
            // zero-length representation
            (&[Suffix(1)], 0, Full),
            (&[FromTo(0, 0)], 0, Unsatisfiable),
            (&[From(0)], 0, Unsatisfiable),
        ];
        for (specs, len, want) in table {
            assert_eq!(&evaluate(specs, *len, 16), want, "{specs:?} of {len}");
        }
    }

    #[test]
    fn too_many_ranges_after_coalescing_serve_the_whole() {
        let specs: Vec<RangeSpec> = (0..10).map(|i| FromTo(i * 10, i * 10 + 1)).collect();
        assert_eq!(evaluate(&specs, 1000, 9), RangeOutcome::Full);
        assert!(matches!(evaluate(&specs, 1000, 10), RangeOutcome::Partial(r) if r.len() == 10));
        // many specs that coalesce into few are fine
        let overlapping: Vec<RangeSpec> = (0..100).map(|i| FromTo(i, i + 5)).collect();
        assert_eq!(evaluate(&overlapping, 1000, 1), p(&[(0, 105)]));
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(&(0..500), 1000), "bytes 0-499/1000");
        assert_eq!(content_range(&(999..1000), 1000), "bytes 999-999/1000");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
    }
}
