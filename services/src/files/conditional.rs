//! Conditional requests (RFC 9110 §13), as plain functions of the request headers and the
//! selected representation's validators.
//!
//! [`evaluate`] applies the preconditions in the order of §13.2.2 and says whether to proceed,
//! answer 304 or answer 412. [`if_range_permits`] decides whether a `Range` is honoured
//! (§13.1.5). Field values that cannot be parsed are treated as the RFC says: an unparsable
//! date is ignored; an unparsable entity-tag list matches nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{
    HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
};

/// What the selected representation can be compared against.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// The current strong entity-tag, with its quotes: `"5f3e-1a2"`.
    pub etag: &'a str,
    /// The `Last-Modified` time sent with the representation (whole seconds matter).
    pub last_modified: SystemTime,
}

/// The outcome of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Carry on with the request (then consider `Range`).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluate the preconditions of a request for an existing representation.
///
/// `get_or_head` is whether the method is GET or HEAD, which decides between 304 and 412 for
/// `If-None-Match` and whether `If-Modified-Since` applies at all.
pub fn evaluate(headers: &HeaderMap, get_or_head: bool, v: &Validators<'_>) -> Precondition {
    // RFC 9110 §13.2.2, step 1: "When recipient is the origin server and If-Match is present,
    // evaluate the If-Match precondition: if true, continue to step 3; if false, respond 412".
    if headers.contains_key(IF_MATCH) {
        if !if_match(headers, v.etag) {
            return Precondition::Failed;
        }
    } else if let Some(since) = single_date(headers, &IF_UNMODIFIED_SINCE) {
        // Step 2: "When recipient is the origin server, If-Match is not present, and
        // If-Unmodified-Since is present, evaluate ...: if false, respond 412".
        // §13.1.4: false when the last modification date is more recent than the date provided.
        if secs(v.last_modified) > secs(since) {
            return Precondition::Failed;
        }
    }
    // Step 3: "When If-None-Match is present, evaluate ...: if false for GET/HEAD, respond 304;
    // if false for other methods, respond 412".
    if headers.contains_key(IF_NONE_MATCH) {
        if none_match_matches(headers, v.etag) {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head {
        // Step 4: "When the method is GET or HEAD, If-None-Match is not present, and
        // If-Modified-Since is present, evaluate ...: if false, respond 304".
        // §13.1.3: false when the representation has not been modified since the date.
        let since = single_date(headers, &IF_MODIFIED_SINCE);
        if since.is_some_and(|since| secs(v.last_modified) <= secs(since)) {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether a `Range` header may be honoured given `If-Range` (RFC 9110 §13.1.5, and step 5 of
/// §13.2.2). Without `If-Range` it may.
pub fn if_range_permits(headers: &HeaderMap, v: &Validators<'_>) -> bool {
    let mut values = headers.get_all(IF_RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // Absent → honour the Range; several values → not a valid If-Range → ignore the Range.
        return !headers.contains_key(IF_RANGE);
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        // §13.1.5: "the server MUST use a strong comparison" and a weak tag never matches.
        return match parse_tag(value.as_bytes()) {
            Some((tag, rest)) if rest.trim_ascii().is_empty() => strong_eq(tag, v.etag),
            _ => false,
        };
    }
    // §13.1.5: a date validator is true when it "exactly matches the Last-Modified field value".
    match crate::http_date::parse(value) {
        Some(date) => secs(date) == secs(v.last_modified),
        None => false,
    }
}

/// §13.1.1: `If-Match: *` is true when a current representation exists (it does); otherwise
/// true when any listed tag matches by strong comparison.
fn if_match(headers: &HeaderMap, etag: &str) -> bool {
    tag_list_any(headers, &IF_MATCH, |tag| strong_eq(tag, etag))
}

/// §13.1.2: `If-None-Match` is *false* (the list matches) when it is `*` or any listed tag
/// matches by weak comparison. Returns whether it matched. An empty `etag` (none stored)
/// matches only `*`.
pub(crate) fn none_match_matches(headers: &HeaderMap, etag: &str) -> bool {
    tag_list_any(headers, &IF_NONE_MATCH, |tag| weak_eq(tag, etag))
}

/// Whether the field is `*` or any entity-tag in every value of `name` satisfies `pred`.
/// `*` counts only as the whole field (§13.1.1: `"*" / #entity-tag`); inside a list it is an
/// error like any other. A value that does not parse stops the scan of that value (its valid
/// tags before the error still count).
fn tag_list_any(headers: &HeaderMap, name: &HeaderName, pred: impl Fn(&str) -> bool) -> bool {
    let mut values = headers.get_all(name).iter();
    if let (Some(only), None) = (values.next(), values.next())
        && only.as_bytes().trim_ascii() == b"*"
    {
        return true;
    }
    for value in headers.get_all(name) {
        let mut rest = value.as_bytes();
        loop {
            rest = skip_separators(rest);
            if rest.is_empty() {
                break;
            }
            let Some((tag, after)) = parse_tag(rest) else {
                break;
            };
            if pred(tag) {
                return true;
            }
            rest = after;
        }
    }
    false
}

fn skip_separators(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', tail @ ..] = s {
        s = tail;
    }
    s
}

/// Parse one `entity-tag = [ weak ] opaque-tag` (§8.8.3) from the start of `s`, returning the
/// tag as written (with `W/` and quotes) and what follows it.
fn parse_tag(s: &[u8]) -> Option<(&str, &[u8])> {
    let body = s.strip_prefix(b"W/").unwrap_or(s);
    let body = body.strip_prefix(b"\"")?;
    let close = body.iter().position(|&b| b == b'"')?;
    let tag_len = (s.len() - body.len()) + close + 1;
    let tag = std::str::from_utf8(&s[..tag_len]).ok()?;
    Some((tag, &s[tag_len..]))
}

/// §8.8.3.2: strong comparison — both tags strong and their opaque-tags identical.
fn strong_eq(tag: &str, ours: &str) -> bool {
    !tag.starts_with("W/") && !ours.starts_with("W/") && tag == ours
}

/// §8.8.3.2: weak comparison — opaque-tags identical, either or both may be weak.
fn weak_eq(tag: &str, ours: &str) -> bool {
    tag.strip_prefix("W/").unwrap_or(tag) == ours.strip_prefix("W/").unwrap_or(ours)
}

/// A date field with exactly one valid HTTP-date; otherwise `None` (§13.1.3, §13.1.4: "A
/// recipient MUST ignore the ... header field if the received field value is not a valid
/// HTTP-date, or if the field value has more than one member").
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    crate::http_date::parse(value.to_str().ok()?.trim())
}

/// HTTP dates have one-second resolution; compare at that resolution.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::Precondition::*;
    use super::*;

    const ETAG: &str = "\"abc-10\"";
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const LATER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn validators() -> Validators<'static> {
        // Sub-second parts of the mtime are invisible to HTTP dates.
        let lm = httpdate::parse_http_date(LM).unwrap_or(UNIX_EPOCH) + Duration::from_millis(700);
        Validators {
            etag: ETAG,
            last_modified: lm,
        }
    }

    /// Header fields of one table row, in order.
    type Fields = &'static [(&'static str, &'static str)];

    fn headers(fields: Fields) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn precondition_order_table() {
        let table: &[(Fields, bool, Precondition)] = &[
            (&[], true, Proceed),
            // step 1: If-Match, strong comparison
            (&[("if-match", "\"abc-10\"")], true, Proceed),
            (&[("if-match", "*")], true, Proceed),
            (&[("if-match", "\"x\", \"abc-10\"")], true, Proceed),
            (
                &[("if-match", "\"x\""), ("if-match", "\"abc-10\"")],
                true,
                Proceed,
            ),
            (&[("if-match", "\"x\"")], true, Failed),
            (&[("if-match", "W/\"abc-10\"")], true, Failed),
            (&[("if-match", "garbage")], true, Failed),
            // `*` is the whole field or an error: a list holding it does not match everything
            (&[("if-match", " * ")], true, Proceed),
            (&[("if-match", "\"x\", *")], true, Failed),
            (&[("if-match", "*"), ("if-match", "\"x\"")], true, Failed),
            (&[("if-match", "*, \"abc-10\"")], true, Failed),
            (&[("if-match", "")], true, Failed),
            // step 1 beats everything after it
            (
                &[("if-match", "\"x\""), ("if-none-match", "\"abc-10\"")],
                true,
                Failed,
            ),
            // step 2: If-Unmodified-Since only without If-Match
            (&[("if-unmodified-since", LM)], true, Proceed),
            (&[("if-unmodified-since", LATER)], true, Proceed),
            (&[("if-unmodified-since", EARLIER)], true, Failed),
            (&[("if-unmodified-since", "yesterday")], true, Proceed),
            (
                &[("if-match", "*"), ("if-unmodified-since", EARLIER)],
                true,
                Proceed,
            ),
            (
                &[
                    ("if-unmodified-since", EARLIER),
                    ("if-none-match", "\"abc-10\""),
                ],
                true,
                Failed,
            ),
            // step 3: If-None-Match, weak comparison; 304 for GET/HEAD, 412 otherwise
            (&[("if-none-match", "\"abc-10\"")], true, NotModified),
            (&[("if-none-match", "W/\"abc-10\"")], true, NotModified),
            (
                &[("if-none-match", "\"x\", W/\"abc-10\"")],
                true,
                NotModified,
            ),
            (&[("if-none-match", "*")], true, NotModified),
            (&[("if-none-match", "\"abc-10\"")], false, Failed),
            (&[("if-none-match", "*")], false, Failed),
            (&[("if-none-match", "\"x\"")], true, Proceed),
            (&[("if-none-match", "\"abc-1\"")], true, Proceed),
            (&[("if-none-match", "abc-10")], true, Proceed),
            (&[("if-none-match", "W/\"x\", *, \"")], true, Proceed),
            (&[("if-none-match", "\"abc-10\", *")], true, NotModified),
            // step 3 wins over step 4: a non-matching If-None-Match disables If-Modified-Since
            (
                &[("if-none-match", "\"x\""), ("if-modified-since", LATER)],
                true,
                Proceed,
            ),
            (
                &[
                    ("if-none-match", "\"abc-10\""),
                    ("if-modified-since", EARLIER),
                ],
                true,
                NotModified,
            ),
            // step 4: If-Modified-Since, GET/HEAD only
            (&[("if-modified-since", LM)], true, NotModified),
            (&[("if-modified-since", LATER)], true, NotModified),
            (&[("if-modified-since", EARLIER)], true, Proceed),
            (&[("if-modified-since", LM)], false, Proceed),
            (&[("if-modified-since", "not a date")], true, Proceed),
            (
                &[("if-modified-since", LM), ("if-modified-since", LM)],
                true,
                Proceed,
            ),
            // obsolete date formats are valid HTTP-dates (§5.6.7)
            (
                &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
                true,
                NotModified,
            ),
            (
                &[("if-modified-since", "Sun Nov  6 08:49:37 1994")],
                true,
                NotModified,
            ),
            // If-Match passes, then If-None-Match / If-Modified-Since still apply
            (
                &[("if-match", "\"abc-10\""), ("if-none-match", "\"abc-10\"")],
                true,
                NotModified,
            ),
            (
                &[("if-match", "\"abc-10\""), ("if-modified-since", LM)],
                true,
                NotModified,
            ),
            (
                &[("if-unmodified-since", LM), ("if-modified-since", LM)],
                true,
                NotModified,
            ),
        ];
        for (fields, get_or_head, want) in table {
            let got = evaluate(&headers(fields), *get_or_head, &validators());
            assert_eq!(got, *want, "{fields:?} get_or_head={get_or_head}");
        }
    }

    #[test]
    fn if_range_table() {
        let table: &[(Fields, bool)] = &[
            (&[], true),
            (&[("if-range", "\"abc-10\"")], true),
            (&[("if-range", " \"abc-10\" ")], true),
            (&[("if-range", "\"x\"")], false),
            (&[("if-range", "W/\"abc-10\"")], false),
            (&[("if-range", "\"abc-10\", \"x\"")], false),
            (&[("if-range", LM)], true),
            (&[("if-range", EARLIER)], false),
            (&[("if-range", LATER)], false),
            (&[("if-range", "garbage")], false),
            (
                &[("if-range", "\"abc-10\""), ("if-range", "\"abc-10\"")],
                false,
            ),
        ];
        for (fields, want) in table {
            assert_eq!(
                if_range_permits(&headers(fields), &validators()),
                *want,
                "{fields:?}"
            );
        }
    }

    #[test]
    fn tags_with_commas_inside_quotes() {
        let v = Validators {
            etag: "\"a,b\"",
            last_modified: UNIX_EPOCH,
        };
        assert_eq!(
            evaluate(&headers(&[("if-none-match", "\"a,b\"")]), true, &v),
            NotModified
        );
        assert_eq!(
            evaluate(&headers(&[("if-none-match", "\"a\", \"b\"")]), true, &v),
            Proceed
        );
    }
}
