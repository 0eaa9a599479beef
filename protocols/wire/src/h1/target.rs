//! The request-target (RFC 9112 §3.2) and the Host field (§3.2, RFC 9110
//! §7.2): which of the four target forms a request uses, its path and query,
//! and a validated authority.
//!
//! Paths stay percent-encoded: decoding them is the router's business. The
//! bytes httparse lets through a target are visible ASCII and, for
//! compatibility with clients that send raw UTF-8, non-ASCII UTF-8; a
//! fragment (`#`) is never part of a request-target and is refused.

use http::Method;

use super::RequestError;

/// The parts of a request-target the session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Percent-encoded path, `*` for the asterisk-form.
    pub(super) path: String,
    /// The query without its `?`.
    pub(super) query: Option<String>,
    /// The authority of an absolute-form target, ASCII-lowercased.
    pub(super) authority: Option<String>,
}

/// Splits a request-target into its form's parts.
pub(super) fn parse(method: &Method, raw: &str) -> Result<Target, RequestError> {
    if raw.contains('#') {
        return Err(RequestError::BadRequest("fragment in request-target"));
    }
    // §3.2.3: "The authority-form of request-target is only used for CONNECT
    // requests." We are no forward proxy.
    if method == Method::CONNECT {
        return match authority(raw.as_bytes(), PortRule::Required) {
            Ok(Some(_)) => Err(RequestError::NotImplemented("CONNECT")),
            _ => Err(RequestError::BadRequest(
                "CONNECT without authority-form target",
            )),
        };
    }
    if raw.starts_with('/') {
        // §3.2.1: origin-form = absolute-path [ "?" query ]
        let (path, query) = split_query(raw);
        return Ok(Target {
            path: path.to_owned(),
            query: query.map(str::to_owned),
            authority: None,
        });
    }
    if raw == "*" {
        // §3.2.4: "The asterisk-form of request-target is only used for a
        // server-wide OPTIONS request".
        if method == Method::OPTIONS {
            return Ok(Target {
                path: "*".to_owned(),
                query: None,
                authority: None,
            });
        }
        return Err(RequestError::BadRequest(
            "asterisk-form target without OPTIONS",
        ));
    }
    absolute_form(raw)
}

/// §3.2.2: absolute-form = absolute-URI. Only `http` and `https` URIs name
/// something this server can serve (RFC 9110 §4.2).
fn absolute_form(raw: &str) -> Result<Target, RequestError> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(RequestError::BadRequest("invalid request-target"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(RequestError::BadRequest(
            "request-target scheme is not http or https",
        ));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (raw_authority, path_and_query) = rest.split_at(authority_end);
    // RFC 9110 §4.2.1: "A sender MUST NOT generate an "http" URI with an
    // empty host identifier. A recipient that processes such a URI reference
    // MUST reject it as invalid."
    let authority = match authority(raw_authority.as_bytes(), PortRule::Optional)? {
        Some(authority) => authority,
        None => {
            return Err(RequestError::BadRequest(
                "empty authority in request-target",
            ));
        }
    };
    let (path, query) = split_query(path_and_query);
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    };
    Ok(Target {
        path,
        query: query.map(str::to_owned),
        authority: Some(authority),
    })
}

fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

/// Validates a Host field value (RFC 9110 §7.2: `Host = uri-host [ ":"
/// port ]`). An empty value is valid and means "no authority" (`None`).
pub(super) fn host(value: &[u8]) -> Result<Option<String>, RequestError> {
    authority(value, PortRule::Optional)
}

/// Whether an authority must carry a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// Host header and absolute-form: `uri-host [ ":" port ]`.
    Optional,
    /// CONNECT's authority-form: `uri-host ":" port` (RFC 9112 §3.2.3).
    Required,
}

/// Validates `uri-host [ ":" port ]` (RFC 3986 §3.2.2, §3.2.3) and returns it
/// ASCII-lowercased; `None` when empty. Userinfo is refused (RFC 9110
/// §4.2.4: "A recipient SHOULD parse for userinfo and treat its presence as
/// an error").
fn authority(raw: &[u8], port: PortRule) -> Result<Option<String>, RequestError> {
    const INVALID: RequestError = RequestError::BadRequest("invalid host");
    if raw.is_empty() {
        return match port {
            PortRule::Optional => Ok(None),
            PortRule::Required => Err(INVALID),
        };
    }
    let is_ip_literal = raw.first() == Some(&b'[');
    let (host, port_part) = match raw {
        // IP-literal = "[" ( IPv6address / IPvFuture ) "]"
        [b'[', inner @ ..] => {
            let close = memchr::memchr(b']', inner).ok_or(INVALID)?;
            let (literal, after) = inner.split_at(close);
            if literal.is_empty() || !literal.iter().all(|&b| is_ip_literal_char(b)) {
                return Err(INVALID);
            }
            match after {
                [b']'] => (literal, None),
                [b']', b':', port @ ..] => (literal, Some(port)),
                _ => return Err(INVALID),
            }
        }
        // Hosts are short: a plain scan beats setting up a vectorized search.
        _ => match raw.iter().position(|&b| b == b':') {
            Some(colon) => (raw.get(..colon).unwrap_or_default(), raw.get(colon + 1..)),
            None => (raw, None),
        },
    };
    if host.is_empty() || (!is_ip_literal && !is_reg_name(host)) {
        return Err(INVALID);
    }
    match port_part {
        // port = *DIGIT; an empty port is allowed by the grammar, a port
        // beyond 65535 names nothing.
        Some(digits) if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) => {
            return Err(INVALID);
        }
        Some(digits) if digits.len() == 5 && digits > b"65535".as_slice() => return Err(INVALID),
        Some([]) | None if port == PortRule::Required => return Err(INVALID),
        _ => {}
    }
    let text = std::str::from_utf8(raw).map_err(|_| INVALID)?;
    Ok(Some(text.to_ascii_lowercase()))
}

/// The bytes a reg-name holds outside its pct-encodings: unreserved / sub-delims.
const REG_NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_unreserved(b as u8) || is_sub_delim(b as u8);
        b += 1;
    }
    table
};

/// reg-name = *( unreserved / pct-encoded / sub-delims )
fn is_reg_name(host: &[u8]) -> bool {
    // The usual host has no pct-encoding: one table lookup per byte.
    if host.iter().all(|&b| REG_NAME_BYTE[usize::from(b)]) {
        return true;
    }
    let mut rest = host;
    while let Some((&b, tail)) = rest.split_first() {
        rest = if b == b'%' {
            match tail {
                [h, l, after @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => after,
                _ => return false,
            }
        } else if is_unreserved(b) || is_sub_delim(b) {
            tail
        } else {
            return false;
        };
    }
    true
}

/// unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// The characters of IPv6address and IPvFuture ("v" HEXDIG "." 1*( unreserved
/// / sub-delims / ":" )); the exact shape is the resolver's to check.
fn is_ip_literal_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || b == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"example.com", Some("example.com")),
            (b"Example.COM:8080", Some("example.com:8080")),
            (b"127.0.0.1:80", Some("127.0.0.1:80")),
            (b"[::1]:443", Some("[::1]:443")),
            (b"[::1]", Some("[::1]")),
            (b"a%2Db", Some("a%2db")),
            (b"host:", Some("host:")),
            (b"host:65535", Some("host:65535")),
        ];
        for &(input, want) in cases {
            assert_eq!(host(input), Ok(want.map(str::to_owned)), "{input:?}");
        }
        assert_eq!(host(b""), Ok(None));
        let bad: &[&[u8]] = &[
            b"user@host",
            b"a b",
            b"host:port",
            b"host:65536",
            b"host:123456",
            b"a:1:2",
            b"[::1",
            b"[]",
            b"[::1]x",
            b":80",
            b"a%2",
            b"a/b",
            b"h\xc3\xa9",
            b"a\"b",
        ];
        for &input in bad {
            assert!(host(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn connect_authority_needs_a_port() {
        assert_eq!(
            authority(b"example.com:443", PortRule::Required),
            Ok(Some("example.com:443".to_owned()))
        );
        assert!(authority(b"example.com", PortRule::Required).is_err());
        assert!(authority(b"example.com:", PortRule::Required).is_err());
        assert!(authority(b"", PortRule::Required).is_err());
    }
}
