//! The fields of a request head as HTTP/2 and HTTP/3 carry them: pseudo-header fields, then
//! regular fields, each checked as it is decoded (RFC 9113 §8.2, §8.3; RFC 9114 §4.2, §4.3 says
//! the same of HTTP/3) and built into an [`http::request::Parts`].

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri, Version};

use crate::h1::fields::is_tchar;

/// Octets a field name may hold (RFC 9113 §8.2): a token character (RFC 9110 §5.6.2) that is
/// not an uppercase letter.
const NAME_OK: [bool; 256] = {
    let mut ok = [false; 256];
    let mut b = 0;
    while b < 256 {
        ok[b] = is_tchar(b as u8) && !(b as u8).is_ascii_uppercase();
        b += 1;
    }
    ok
};

/// Most regular fields a connection remembers, by position in the request head.
const MEMO_FIELDS: usize = 16;

/// What the fields of a connection's last request head parsed to. A client repeats most of
/// its head from request to request (`:authority`, often `:path`, and fields such as
/// `user-agent`, `accept` or `cookie` in the same order), so each field is first compared with
/// the one at its position last time: when the bytes are equal, the parsed value is shared
/// instead of checked and copied again. Only validated fields are remembered.
#[derive(Default)]
pub(crate) struct Memo {
    authority: Option<Authority>,
    path: Option<PathAndQuery>,
    /// Regular fields by position; `content-length`, which must be parsed, is never kept.
    pub(crate) fields: Vec<(HeaderName, HeaderValue)>,
}

/// Fill `slot`, a pseudo-header field that may appear once, with `value` parsed, or with the
/// memo's own when it was parsed from the same bytes; a new parse is remembered in its place.
/// False when the field is repeated or does not parse: the request is malformed.
fn set_remembered<T: Clone>(
    slot: &mut Option<T>,
    memo: &mut Option<T>,
    value: &[u8],
    text: fn(&T) -> &str,
    parse: impl FnOnce(&[u8]) -> Option<T>,
) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = match memo {
        Some(known) if text(known).as_bytes() == value => Some(known.clone()),
        _ => parse(value),
    };
    if let Some(parsed) = slot {
        *memo = Some(parsed.clone());
    }
    slot.is_some()
}

/// The fields of one header block, checked as they are decoded (RFC 9113 §8.2, §8.3).
pub(crate) struct Fields {
    request: bool,
    method: Option<Method>,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    /// The connection's memo of its last request head: taken in, handed back.
    pub(crate) memo: Memo,
    path: Option<PathAndQuery>,
    pub(crate) headers: HeaderMap,
    content_length: Option<u64>,
    /// Regular fields seen so far: the position of the next one.
    regular: usize,
    pub(crate) malformed: bool,
    pub(crate) too_large: bool,
    size: usize,
    limit: usize,
}

impl Fields {
    pub(crate) fn new(request: bool, limit: u32) -> Fields {
        Fields {
            request,
            method: None,
            scheme: None,
            authority: None,
            memo: Memo::default(),
            path: None,
            headers: HeaderMap::new(),
            content_length: None,
            regular: 0,
            malformed: false,
            too_large: false,
            size: 0,
            limit: limit as usize,
        }
    }

    pub(crate) fn field(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.size > self.limit {
            self.too_large = true;
        }
        if self.malformed || self.too_large {
            return;
        }
        // §8.2.1: "A field value MUST NOT contain the zero value (ASCII NUL, 0x00), line feed
        // (ASCII LF, 0x0a), or carriage return (ASCII CR, 0x0d) at any position. A field value
        // MUST NOT start or end with an ASCII whitespace character".
        if value
            .first()
            .into_iter()
            .chain(value.last())
            .any(|&b| b == b' ' || b == b'\t')
        {
            self.malformed = true;
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            // §8.3: pseudo-header fields come first, only in requests (not trailers), each
            // once, and only the defined ones.
            if !self.request || self.regular > 0 {
                self.malformed = true;
                return;
            }
            if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
                self.malformed = true;
                return;
            }
            match pseudo {
                b"method" => {
                    if self.method.is_some() {
                        self.malformed = true;
                        return;
                    }
                    match Method::from_bytes(value) {
                        Ok(m) => self.method = Some(m),
                        Err(_) => self.malformed = true,
                    }
                    return;
                }
                b"scheme" => {
                    if self.scheme.is_some() {
                        self.malformed = true;
                        return;
                    }
                    self.scheme = match value {
                        b"https" => Some(Scheme::HTTPS),
                        b"http" => Some(Scheme::HTTP),
                        other => Scheme::try_from(other).ok(),
                    };
                    self.malformed |= self.scheme.is_none();
                    return;
                }
                b"authority" => {
                    let (slot, memo) = (&mut self.authority, &mut self.memo.authority);
                    self.malformed |= !set_remembered(slot, memo, value, Authority::as_str, |v| {
                        Authority::try_from(v).ok()
                    });
                    return;
                }
                b"path" => {
                    // §8.3.1: ":path [...] MUST NOT be empty for "http" or "https" URIs"; for
                    // CONNECT it must be absent, which `into_request` checks.
                    let (slot, memo) = (&mut self.path, &mut self.memo.path);
                    self.malformed |=
                        !set_remembered(slot, memo, value, PathAndQuery::as_str, |v| {
                            (!v.is_empty()).then(|| PathAndQuery::try_from(v).ok())?
                        });
                    return;
                }
                _ => {
                    self.malformed = true;
                    return;
                }
            };
        }
        let position = self.regular;
        self.regular += 1;
        if let Some((known_name, known_value)) = self.memo.fields.get(position)
            && known_name.as_str().as_bytes() == name
            && known_value.as_bytes() == value
        {
            // Checked when it was remembered; never `content-length`.
            self.headers.append(known_name.clone(), known_value.clone());
            return;
        }
        // §8.2: "A field name MUST NOT contain characters in the ranges 0x00-0x20, 0x41-0x5a,
        // or 0x7f-0xff (all ranges inclusive)."
        if name.is_empty() || name.iter().any(|&b| !NAME_OK[usize::from(b)]) {
            self.malformed = true;
            return;
        }
        // §8.2.2: connection-specific fields make the message malformed; TE may only say
        // "trailers".
        let content_length = match name {
            b"connection" | b"transfer-encoding" | b"upgrade" | b"keep-alive"
            | b"proxy-connection" => {
                self.malformed = true;
                return;
            }
            b"te" if value != b"trailers" => {
                self.malformed = true;
                return;
            }
            b"content-length" => self.request,
            _ => false,
        };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            self.malformed = true;
            return;
        };
        if content_length {
            let parsed = value
                .to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (parsed, self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    self.malformed = true;
                    return;
                }
            }
        }
        if self.request && !content_length && position <= self.memo.fields.len() {
            let entry = (name.clone(), value.clone());
            if position == self.memo.fields.len() {
                if position < MEMO_FIELDS {
                    self.memo.fields.push(entry);
                }
            } else {
                self.memo.fields[position] = entry;
            }
        }
        self.headers.append(name, value);
    }

    /// The request head, or `None` when the request is malformed (§8.3.1).
    pub(crate) fn into_request(
        self,
        version: Version,
    ) -> Option<(http::request::Parts, Option<u64>)> {
        if self.malformed {
            return None;
        }
        let method = self.method?;
        let mut parts = http::uri::Parts::default();
        if method == Method::CONNECT {
            // §8.5: CONNECT names only the authority.
            if self.scheme.is_some() || self.path.is_some() {
                return None;
            }
            parts.authority = Some(self.authority?);
        } else {
            let (scheme, path) = (self.scheme?, self.path?);
            parts.path_and_query = Some(path);
            // Without :authority the target is origin-form; `Host` names the authority.
            if let Some(authority) = self.authority {
                parts.scheme = Some(scheme);
                parts.authority = Some(authority);
            }
        }
        let uri = Uri::from_parts(parts).ok()?;
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = self.headers;
        Some((request.into_parts().0, self.content_length))
    }
}
