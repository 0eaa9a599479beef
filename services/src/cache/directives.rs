//! `Cache-Control` (RFC 9111 §5.2) and the RFC 5861 extensions, parsed once per message.
//!
//! Directive names are case-insensitive; arguments are tokens or quoted strings (§5.2). When a
//! directive repeats, the first occurrence counts (§4.2.1: "either the first occurrence should
//! be used or the response should be considered stale"). A delta-seconds argument that is not
//! a number makes the directive the most restrictive value, 0 (§4.2.1: "Caches are encouraged
//! to consider responses that have invalid freshness information ... to be stale"); one too large
//! is capped at 2^31 (§1.2.2).

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// The largest delta-seconds a cache must represent (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

/// The directives of one message's `Cache-Control` fields that this cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store` (§5.2.1.5, §5.2.2.5): never store the response.
    pub no_store: bool,
    /// `no-cache` (§5.2.1.4, §5.2.2.4): never use a stored response without revalidating. The
    /// qualified response form (`no-cache="Set-Cookie"`) is treated as unqualified: stricter.
    pub no_cache: bool,
    /// `private` (§5.2.2.7): a shared cache must not store it (qualified form treated alike).
    pub private: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2): never serve it stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8): `must-revalidate` for shared caches.
    pub proxy_revalidate: bool,
    /// `max-age` in seconds (§5.2.1.1 request, §5.2.2.1 response).
    pub max_age: Option<u64>,
    /// `s-maxage` in seconds (§5.2.2.10): overrides `max-age` in a shared cache.
    pub s_maxage: Option<u64>,
    /// `max-stale` (§5.2.1.2): `Some(None)` accepts any staleness, `Some(Some(n))` up to `n` s.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh` in seconds (§5.2.1.3).
    pub min_fresh: Option<u64>,
    /// `only-if-cached` (§5.2.1.7): answer from the cache or 504.
    pub only_if_cached: bool,
    /// `stale-while-revalidate` in seconds (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` in seconds (RFC 5861 §4), in a request or a response.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// The directives of every `Cache-Control` field line in `headers`, in order.
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            // A field value that is not visible ASCII carries no directive we could trust.
            let Ok(text) = value.to_str() else { continue };
            for (name, arg) in Directives::new(text) {
                cc.apply(&name, arg.as_deref());
            }
        }
        cc
    }

    fn apply(&mut self, name: &str, arg: Option<&str>) {
        let seconds = || Some(arg.map_or(0, delta_seconds));
        match name {
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "only-if-cached" => self.only_if_cached = true,
            "max-age" => self.max_age = self.max_age.or_else(seconds),
            "s-maxage" => self.s_maxage = self.s_maxage.or_else(seconds),
            "min-fresh" => self.min_fresh = self.min_fresh.or_else(seconds),
            "stale-while-revalidate" => {
                self.stale_while_revalidate = self.stale_while_revalidate.or_else(seconds);
            }
            "stale-if-error" => self.stale_if_error = self.stale_if_error.or_else(seconds),
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = Some(arg.map(delta_seconds));
            }
            _ => {} // §5.2.3: unknown extensions are ignored
        }
    }
}

/// `delta-seconds = 1*DIGIT` (§1.2.2); anything else counts as 0, overflow as [`DELTA_MAX`].
pub fn delta_seconds(text: &str) -> u64 {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    text.parse::<u64>().map_or(DELTA_MAX, |n| n.min(DELTA_MAX))
}

/// Iterator over `name[=token|quoted-string]` items of one field value, names lowercased.
struct Directives<'a> {
    rest: &'a str,
}

impl<'a> Directives<'a> {
    fn new(text: &'a str) -> Self {
        Directives { rest: text }
    }
}

impl Iterator for Directives<'_> {
    type Item = (String, Option<String>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
            if self.rest.is_empty() {
                return None;
            }
            let end = self.rest.find([',', '=']).unwrap_or(self.rest.len());
            let name = self.rest[..end].trim().to_ascii_lowercase();
            self.rest = &self.rest[end..];
            let mut arg = None;
            if let Some(after) = self.rest.strip_prefix('=') {
                let after = after.trim_start();
                if let Some(quoted) = after.strip_prefix('"') {
                    let (value, rest) = unquote(quoted);
                    arg = Some(value);
                    self.rest = rest;
                } else {
                    let end = after.find(',').unwrap_or(after.len());
                    arg = Some(after[..end].trim().to_owned());
                    self.rest = &after[end..];
                }
            }
            if !name.is_empty() {
                return Some((name, arg));
            }
        }
    }
}

/// The content of a quoted-string (after its opening quote) and what follows its closing quote.
fn unquote(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cc(lines: &[&str]) -> CacheControl {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(line).unwrap());
        }
        CacheControl::parse(&headers)
    }

    #[test]
    fn directives_table() {
        let cases: &[(&[&str], CacheControl)] = &[
            (&[], CacheControl::default()),
            (
                &["max-age=60"],
                CacheControl {
                    max_age: Some(60),
                    ..Default::default()
                },
            ),
            (
                &["Public, S-MAXAGE=10, max-age=5"],
                CacheControl {
                    public: true,
                    s_maxage: Some(10),
                    max_age: Some(5),
                    ..Default::default()
                },
            ),
            // First occurrence wins, across field lines too.
            (
                &["max-age=5", "max-age=500"],
                CacheControl {
                    max_age: Some(5),
                    ..Default::default()
                },
            ),
            // Invalid numbers are the most restrictive value; huge ones are capped.
            (
                &["max-age=abc, s-maxage=99999999999999999999999"],
                CacheControl {
                    max_age: Some(0),
                    s_maxage: Some(DELTA_MAX),
                    ..Default::default()
                },
            ),
            (
                &["max-age=\"30\""],
                CacheControl {
                    max_age: Some(30),
                    ..Default::default()
                },
            ),
            (
                &["no-cache=\"Set-Cookie, X-A\", private=\"x\", no-store"],
                CacheControl {
                    no_cache: true,
                    private: true,
                    no_store: true,
                    ..Default::default()
                },
            ),
            (
                &["must-revalidate,proxy-revalidate , only-if-cached"],
                CacheControl {
                    must_revalidate: true,
                    proxy_revalidate: true,
                    only_if_cached: true,
                    ..Default::default()
                },
            ),
            (
                &["max-stale"],
                CacheControl {
                    max_stale: Some(None),
                    ..Default::default()
                },
            ),
            (
                &["max-stale=30, min-fresh=4"],
                CacheControl {
                    max_stale: Some(Some(30)),
                    min_fresh: Some(4),
                    ..Default::default()
                },
            ),
            (
                &["max-age=1, stale-while-revalidate=20, stale-if-error=300, x-ext=\"a,b\""],
                CacheControl {
                    max_age: Some(1),
                    stale_while_revalidate: Some(20),
                    stale_if_error: Some(300),
                    ..Default::default()
                },
            ),
            (&[",,, ,"], CacheControl::default()),
        ];
        for (lines, want) in cases {
            assert_eq!(&cc(lines), want, "{lines:?}");
        }
    }

    #[test]
    fn delta_seconds_edges() {
        assert_eq!(delta_seconds("0"), 0);
        assert_eq!(delta_seconds("007"), 7);
        assert_eq!(delta_seconds("-1"), 0);
        assert_eq!(delta_seconds("1.5"), 0);
        assert_eq!(delta_seconds(""), 0);
        assert_eq!(delta_seconds("2147483649"), DELTA_MAX);
    }
}
