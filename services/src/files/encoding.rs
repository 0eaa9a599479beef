//! Choosing a precompressed representation from `Accept-Encoding` (RFC 9110 §12.5.3).
//!
//! Operators may put `x.br`, `x.zst` and `x.gz` next to `x`; we never compress on the fly.
//! [`choose`] picks, among the encodings that exist on disk, the one the client prefers by
//! q-value, breaking ties br > zstd > gzip (smallest first), or `None` for the identity file.
//!
//! Policy, where the RFC leaves room: no `Accept-Encoding` at all means identity (what every
//! server does, although §12.5.3 would allow any coding); identity without an explicit q-value
//! is the least preferred acceptable choice, so `gzip;q=0.1` still beats it; and if nothing,
//! not even identity, is acceptable we send identity anyway rather than 406 (§12.5.3 allows
//! ignoring the field).

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

/// A content coding we can serve from a precompressed sibling file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Zstd,
    Gzip,
}

impl Encoding {
    /// In tie-break order: the first wins when q-values are equal.
    pub const ALL: [Encoding; 3] = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];

    /// The `Content-Encoding` token (§8.4.1).
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file-name suffix of the sibling holding this encoding.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }
}

/// q-values in thousandths (§12.4.2: at most three decimals), 0..=1000.
type Quality = u16;

/// The client's stated preferences for our codings, identity and `*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preferences {
    /// Explicit q for br, zstd, gzip (in [`Encoding::ALL`] order).
    codings: [Option<Quality>; 3],
    identity: Option<Quality>,
    star: Option<Quality>,
}

impl Preferences {
    /// Parse every `Accept-Encoding` field line. Elements that do not parse are skipped.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Preferences {
        let mut prefs = Preferences::default();
        for value in values {
            for element in value.split(|&b| b == b',') {
                let mut params = element.split(|&b| b == b';');
                let coding = params.next().unwrap_or_default().trim_ascii();
                if coding.is_empty() {
                    continue;
                }
                let Some(q) = quality(params) else { continue };
                let slot = if coding.eq_ignore_ascii_case(b"br") {
                    &mut prefs.codings[0]
                } else if coding.eq_ignore_ascii_case(b"zstd") {
                    &mut prefs.codings[1]
                } else if coding.eq_ignore_ascii_case(b"gzip")
                    || coding.eq_ignore_ascii_case(b"x-gzip")
                {
                    // §8.4.1.3: "A recipient SHOULD consider "x-gzip" to be equivalent to "gzip"."
                    &mut prefs.codings[2]
                } else if coding.eq_ignore_ascii_case(b"identity") {
                    &mut prefs.identity
                } else if coding == b"*" {
                    &mut prefs.star
                } else {
                    continue;
                };
                // Listed twice: keep the more generous value.
                *slot = Some(slot.map_or(q, |old| old.max(q)));
            }
        }
        prefs
    }

    /// The q-value for a coding: its own, else `*`'s (§12.5.3: "*" matches any available
    /// content coding not explicitly listed), else not acceptable.
    fn coding_quality(&self, encoding: Encoding) -> Quality {
        let i = Encoding::ALL
            .iter()
            .position(|&e| e == encoding)
            .unwrap_or(0);
        self.codings[i].or(self.star).unwrap_or(0)
    }
}

/// The q-value of one element's parameters; `None` if `q` is malformed (element skipped).
fn quality<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<Quality> {
    for param in params {
        let param = param.trim_ascii();
        let Some((name, value)) = param.split_at_checked(2) else {
            continue;
        };
        if !name.eq_ignore_ascii_case(b"q=") {
            continue;
        }
        return parse_qvalue(value.trim_ascii());
    }
    Some(1000)
}

/// §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
fn parse_qvalue(v: &[u8]) -> Option<Quality> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Quality = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| Quality::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Pick the encoding to serve among `available` (siblings that exist), or `None` for identity.
pub fn choose(headers: &HeaderMap, available: &[Encoding]) -> Option<Encoding> {
    if available.is_empty() || !headers.contains_key(ACCEPT_ENCODING) {
        return None;
    }
    let prefs = Preferences::parse(
        headers
            .get_all(ACCEPT_ENCODING)
            .iter()
            .map(|v| v.as_bytes()),
    );
    choose_from(&prefs, available)
}

/// [`choose`] on already parsed preferences.
pub fn choose_from(prefs: &Preferences, available: &[Encoding]) -> Option<Encoding> {
    let mut best: Option<(Encoding, Quality)> = None;
    for &encoding in Encoding::ALL.iter().filter(|e| available.contains(e)) {
        let q = prefs.coding_quality(encoding);
        // §12.4.2: "A value of 0 means "not acceptable"". Strictly greater keeps the tie-break.
        if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((encoding, q));
        }
    }
    let (encoding, q) = best?;
    // Identity wins only when the client rates it explicitly higher than the best coding.
    match prefs.identity {
        Some(identity) if identity > q => None,
        _ => Some(encoding),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::Encoding::*;
    use super::*;

    const ALL: &[Encoding] = &[Brotli, Zstd, Gzip];

    fn pick(accept: &[&'static str], available: &[Encoding]) -> Option<Encoding> {
        let mut h = HeaderMap::new();
        for v in accept {
            h.append(ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        choose(&h, available)
    }

    #[test]
    fn negotiation_table() {
        let table: &[(&[&str], &[Encoding], Option<Encoding>)] = &[
            (&[], ALL, None),
            (&[""], ALL, None),
            (&["gzip, deflate, br, zstd"], ALL, Some(Brotli)),
            (&["gzip, deflate, br, zstd"], &[Zstd, Gzip], Some(Zstd)),
            (&["gzip, deflate, br, zstd"], &[Gzip], Some(Gzip)),
            (&["gzip, deflate, br, zstd"], &[], None),
            (&["gzip"], ALL, Some(Gzip)),
            (&["x-gzip"], ALL, Some(Gzip)),
            (&["GZIP"], ALL, Some(Gzip)),
            (&["deflate"], ALL, None),
            (&["br;q=0.5, gzip;q=0.8"], ALL, Some(Gzip)),
            (&["br;q=0.8, gzip;q=0.8, zstd;q=0.8"], ALL, Some(Brotli)),
            (&["gzip;q=0.8, zstd;q=0.8"], ALL, Some(Zstd)),
            (&["br;q=0", "gzip"], ALL, Some(Gzip)),
            (&["br;q=0, gzip;q=0, zstd;q=0"], ALL, None),
            (&["br;q=0.000"], ALL, None),
            (&["br;Q=1.000"], ALL, Some(Brotli)),
            (&["br ; q=0.5 ; level=3"], ALL, Some(Brotli)),
            // `*` covers codings not listed
            (&["*"], ALL, Some(Brotli)),
            (&["*;q=0.5, br;q=0.1"], ALL, Some(Zstd)),
            (&["*;q=0, gzip"], ALL, Some(Gzip)),
            (&["*;q=0"], ALL, None),
            (&["*;q=0, identity"], ALL, None),
            // identity: implicit is least preferred; explicit and higher wins
            (&["gzip;q=0.1"], ALL, Some(Gzip)),
            (&["identity, gzip;q=0.5"], ALL, None),
            (&["identity;q=0.5, gzip;q=0.5"], ALL, Some(Gzip)),
            (&["identity;q=0, gzip"], ALL, Some(Gzip)),
            // malformed q-values: the element is skipped
            (&["br;q=2, gzip"], ALL, Some(Gzip)),
            (&["br;q=1.5, gzip"], ALL, Some(Gzip)),
            (&["br;q=0.1234, gzip;q=0.1"], ALL, Some(Gzip)),
            (&["br;q=, gzip;q=0.1"], ALL, Some(Gzip)),
            (&["br;q=abc"], ALL, None),
            // listed twice: the more generous value
            (&["br;q=0", "br"], ALL, Some(Brotli)),
            (&[",,, ;q=1, br"], ALL, Some(Brotli)),
        ];
        for (accept, available, want) in table {
            assert_eq!(
                pick(accept, available),
                *want,
                "{accept:?} from {available:?}"
            );
        }
    }

    #[test]
    fn qvalues() {
        let table: &[(&str, Option<u16>)] = &[
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("0.1234", None),
            ("2", None),
            ("", None),
            (".5", None),
            ("0.a", None),
        ];
        for (v, want) in table {
            assert_eq!(parse_qvalue(v.as_bytes()), *want, "{v:?}");
        }
    }
}
