//! The client side of HTTP/1.1, as the reverse proxy speaks it to a member: request heads out,
//! response heads in (RFC 9112 §3–§6).
//!
//! [`write_request_head`] appends a request head to a write buffer. Framing is the caller's
//! decision ([`RequestFraming`]); the map's own framing and connection fields are skipped, so the
//! head cannot contradict the body that follows.
//!
//! [`parse_response_head`] reads a response head from the front of a read buffer and decides how
//! its body is delimited, from the status, the request method, `Transfer-Encoding` and
//! `Content-Length` (RFC 9112 §6.3), and whether the connection may carry another request. The
//! fields it hands back are the ones to forward: framing and hop-by-hop fields (RFC 9110 §7.6.1)
//! and every field `Connection` names are left out.
//!
//! What it refuses: more than [`MAX_RESPONSE_FIELDS`] fields, a head longer than the caller's
//! limit, a `Content-Length` that is not a number or that disagrees with another one, a
//! `Transfer-Encoding` on a response that cannot have a body, and anything `httparse` finds
//! malformed (bare CR, invalid names or values, a bad status line).

use std::mem::MaybeUninit;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::response::put_field;

/// Most header fields in one response head (and in one trailer section).
pub const MAX_RESPONSE_FIELDS: usize = 128;

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing field (a GET or HEAD without a body).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a streamed body of unknown length).
    Chunked,
}

/// Appends `METHOD target HTTP/1.1`, `Host` (the map's, else `host`), the map's fields less
/// framing and `Connection`, the framing field and the empty line.
pub fn write_request_head(
    dst: &mut BytesMut,
    method: &Method,
    target: &str,
    host: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    dst.reserve(64 + target.len() + host.len() + headers.len() * 32);
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        dst.put_slice(b"host: ");
        dst.put_slice(host.as_bytes());
        dst.put_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (name == header::CONNECTION && !is_upgrade_token(value))
        {
            continue;
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            dst.put_slice(b"content-length: ");
            dst.put_slice(itoa::Buffer::new().format(n).as_bytes());
            dst.put_slice(b"\r\n");
        }
        RequestFraming::Chunked => dst.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    dst.put_slice(b"\r\n");
}

fn is_upgrade_token(value: &HeaderValue) -> bool {
    value.as_bytes().eq_ignore_ascii_case(b"upgrade")
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: a HEAD request, 1xx, 204 or 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the member closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The fields to forward, as `name: value\r\n` lines in the member's order and spelling:
    /// no framing, hop-by-hop or `Connection`-named fields, and none of those a server writes
    /// itself (`Server`, `Date`, `Alt-Svc`). [`parse_field_lines`] makes a map of them.
    pub fields: Vec<u8>,
    pub body: ResponseBody,
    /// The `Content-Length` the member sent (also for HEAD and 304, where no body follows).
    pub content_length: Option<u64>,
    /// The connection may carry another request once this body is read to its end.
    pub keep_alive: bool,
    /// Bytes of the head, to be taken from the front of the buffer.
    pub len: usize,
}

impl ResponseHead {
    /// A 1xx other than 101: an interim answer, the final one follows.
    pub fn is_interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }
}

/// Why a member's response head is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The head is longer than the caller's limit and still not complete.
    TooLarge,
    /// The head breaks the grammar or its framing is ambiguous; the text says how.
    Malformed(String),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::TooLarge => f.write_str("response head too large"),
            ResponseError::Malformed(why) => write!(f, "malformed response head: {why}"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Why a member's field is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop (RFC 9110 §7.6.1), or written by the server itself.
    Other,
}

/// Fields never forwarded: framing (the session writes its own), hop-by-hop ones, and those
/// the server owns (`Server`, `Date`; `Alt-Svc`, which names the member's alternatives, not
/// ours).
fn dropped(name: &[u8]) -> Option<Dropped> {
    const OTHER: [&[u8]; 10] = [
        b"te",
        b"date",
        b"server",
        b"trailer",
        b"upgrade",
        b"alt-svc",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    ];
    if name.eq_ignore_ascii_case(b"content-length") {
        Some(Dropped::ContentLength)
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        Some(Dropped::TransferEncoding)
    } else if name.eq_ignore_ascii_case(b"connection") {
        Some(Dropped::Connection)
    } else if OTHER
        .iter()
        .any(|o| o.len() == name.len() && o.eq_ignore_ascii_case(name))
    {
        Some(Dropped::Other)
    } else {
        None
    }
}

/// Parses the response head at the front of `src`, for a request with `method`. `Ok(None)` when
/// the head is not complete yet (read more, unless `src` already holds `max_head` bytes, which
/// is [`ResponseError::TooLarge`]).
pub fn parse_response_head(
    src: &[u8],
    method: &Method,
    max_head: usize,
) -> Result<Option<ResponseHead>, ResponseError> {
    // Uninitialised slots: zeroing 128 of them cost more than parsing a typical head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        src,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if src.len() >= max_head => {
            return Err(ResponseError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::Malformed("too many fields".into()));
        }
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    if len > max_head {
        return Err(ResponseError::TooLarge);
    }
    let malformed = |why: &str| Err(ResponseError::Malformed(why.to_owned()));
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let status = match response.code.map(StatusCode::from_u16) {
        Some(Ok(s)) => s,
        _ => return malformed("invalid status code"),
    };
    let mut content_length: Option<u64> = None;
    let mut chunked_last = false;
    let mut transfer_encoding = false;
    let mut close = version == Version::HTTP_10;
    let mut named: Vec<&[u8]> = Vec::new();
    let mut kept_bytes = 0;
    // First pass: framing, connection options, and the size of what is kept.
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        match dropped(name) {
            None => kept_bytes += name.len() + field.value.len() + 4,
            Some(Dropped::ContentLength) => {
                for part in field.value.split(|&b| b == b',') {
                    let Some(n) = parse_length(trim(part)) else {
                        return malformed("invalid Content-Length");
                    };
                    if content_length.is_some_and(|c| c != n) {
                        return malformed("conflicting Content-Length values");
                    }
                    content_length = Some(n);
                }
            }
            Some(Dropped::TransferEncoding) => {
                transfer_encoding = true;
                // Only the last coding decides whether the body is chunked.
                for coding in field.value.split(|&b| b == b',') {
                    let coding = trim(coding);
                    if !coding.is_empty() {
                        chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                    }
                }
            }
            Some(Dropped::Connection) => {
                for token in field.value.split(|&b| b == b',') {
                    let token = trim(token);
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        if version == Version::HTTP_10 {
                            close = false;
                        }
                    } else if !token.is_empty() {
                        named.push(token);
                    }
                }
            }
            Some(Dropped::Other) => {}
        }
    }
    // Second pass: the kept fields as they came (httparse checked names and values), less
    // those `Connection` names.
    let mut fields = Vec::with_capacity(kept_bytes + 32);
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        if dropped(name).is_some() || named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        put_field(&mut fields, name, field.value);
    }
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        ResponseBody::None
    } else if transfer_encoding {
        // RFC 9112 §6.3 rules 3 and 4: Transfer-Encoding overrides Content-Length, and a body
        // whose last coding is not chunked runs to the close. Either way, a message that
        // carried both may have been crafted to desynchronise us: the connection is not reused.
        if content_length.is_some() {
            close = true;
        }
        if chunked_last {
            ResponseBody::Chunked
        } else {
            close = true;
            ResponseBody::Close
        }
    } else if let Some(n) = content_length {
        ResponseBody::Length(n)
    } else {
        close = true;
        ResponseBody::Close
    };
    if transfer_encoding && (status.is_informational() || status == StatusCode::NO_CONTENT) {
        return malformed("Transfer-Encoding on a response that has no body");
    }
    Ok(Some(ResponseHead {
        status,
        version,
        fields,
        body,
        content_length,
        keep_alive: !close,
        len,
    }))
}

/// Parses field lines (`name: value\r\n` each, without a final empty line: a response's
/// [`ResponseHead::fields`], or a trailer section as [`crate::ChunkedDecoder::take_trailers`]
/// returns it) into a map.
pub fn parse_field_lines(src: &[u8]) -> Result<HeaderMap, ResponseError> {
    let mut lines = Vec::with_capacity(src.len() + 2);
    lines.extend_from_slice(src);
    lines.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
    match httparse::parse_headers(&lines, &mut slots) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let mut out = HeaderMap::with_capacity(parsed.len());
            for field in parsed.iter() {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(field.name.as_bytes()),
                    HeaderValue::from_bytes(field.value),
                ) else {
                    return Err(ResponseError::Malformed("invalid field".into()));
                };
                out.append(name, value);
            }
            Ok(out)
        }
        Ok(httparse::Status::Partial) => Err(ResponseError::Malformed("incomplete fields".into())),
        Err(e) => Err(ResponseError::Malformed(format!("fields: {e}"))),
    }
}

/// Parses a trailer section into the fields to forward: framing, hop-by-hop and routing
/// fields are not allowed in trailers (RFC 9110 §6.5.1) and are left out.
pub fn parse_trailers(src: &[u8]) -> Result<HeaderMap, ResponseError> {
    let mut out = parse_field_lines(src)?;
    let drop: Vec<HeaderName> = out
        .keys()
        .filter(|n| dropped(n.as_str().as_bytes()).is_some() || *n == header::HOST)
        .cloned()
        .collect();
    for name in drop {
        out.remove(name);
    }
    Ok(out)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// 1*DIGIT, at most 19 digits (fits a u64).
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<ResponseHead>, ResponseError> {
        parse_response_head(head.as_bytes(), &Method::GET, 64 * 1024)
    }

    fn ok(head: &str) -> ResponseHead {
        parse(head).expect("valid").expect("complete")
    }

    fn map(head: &ResponseHead) -> HeaderMap {
        parse_field_lines(&head.fields).expect("the kept lines parse")
    }

    #[test]
    fn a_length_delimited_response_keeps_its_connection() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello");
        assert_eq!(h.status, 200);
        assert_eq!(h.body, ResponseBody::Length(5));
        assert_eq!(h.content_length, Some(5));
        assert!(h.keep_alive);
        assert_eq!(
            h.len,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n".len()
        );
        assert_eq!(h.fields, b"ETag: \"x\"\r\n");
        assert!(!map(&h).contains_key(header::CONTENT_LENGTH));
        assert_eq!(map(&h)[header::ETAG], "\"x\"");
    }

    #[test]
    fn partial_heads_ask_for_more_and_long_ones_are_refused() {
        let full = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).expect("no error").is_none(), "{cut}");
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(100));
        assert_eq!(
            parse_response_head(long.as_bytes(), &Method::GET, 64).unwrap_err(),
            ResponseError::TooLarge
        );
    }

    #[test]
    fn chunked_wins_over_content_length_and_the_connection_closes() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, ResponseBody::Chunked);
        assert!(!h.keep_alive);
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.body, ResponseBody::Chunked);
        assert!(h.keep_alive);
        assert!(!map(&h).contains_key(header::TRANSFER_ENCODING));
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.body, ResponseBody::Close);
        assert!(!h.keep_alive);
    }

    #[test]
    fn no_length_means_read_to_close() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(h.body, ResponseBody::Close);
        assert!(!h.keep_alive);
    }

    #[test]
    fn bodiless_answers() {
        for head in [
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            let h = ok(head);
            assert_eq!(h.body, ResponseBody::None, "{head}");
            assert!(h.keep_alive);
        }
        assert!(ok("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").is_interim());
        assert!(!ok("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_interim());
        let h = parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            &Method::HEAD,
            1024,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, ResponseBody::None);
        assert_eq!(h.content_length, Some(10));
    }

    #[test]
    fn content_length_must_be_one_number() {
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n").body,
            ResponseBody::Length(4)
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            "HTTX/1.1 200 OK\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ResponseError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_stay_behind() {
        let h = ok(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
                    X-Secret: 1\r\nProxy-Connection: x\r\nTrailer: grpc-status\r\nUpgrade: h2\r\n\
                    Content-Length: 0\r\nX-Kept: 2\r\n\r\n",
        );
        assert!(h.keep_alive);
        assert_eq!(
            h.fields,
            b"X-Kept: 2\r\n",
            "{:?}",
            String::from_utf8_lossy(&h.fields)
        );
        assert_eq!(map(&h)["x-kept"], "2");
        assert!(
            !ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
    }

    #[test]
    fn fields_the_server_writes_itself_stay_behind_and_the_rest_keep_their_order() {
        let h = ok(
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
                    Alt-Svc: h3=\":443\"\r\nContent-Type: text/plain\r\nVia: 1.1 a\r\n\
                    Set-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            h.fields,
            b"Content-Type: text/plain\r\nVia: 1.1 a\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
        );
        let m = map(&h);
        assert_eq!(m.get_all(header::SET_COOKIE).iter().count(), 2);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn http_1_0_closes_unless_it_asks_to_keep_alive() {
        assert!(!ok("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        let h = ok("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(h.version, Version::HTTP_10);
    }

    #[test]
    fn too_many_fields_are_refused() {
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_RESPONSE_FIELDS {
            head.push_str(&format!("x-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(matches!(parse(&head), Err(ResponseError::Malformed(_))));
    }

    #[test]
    fn request_heads_state_their_framing_once() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        let mut out = BytesMut::new();
        write_request_head(
            &mut out,
            &Method::POST,
            "/a?b",
            "example.org",
            &headers,
            RequestFraming::Length(3),
        );
        assert_eq!(
            &out[..],
            b"POST /a?b HTTP/1.1\r\nhost: example.org\r\naccept: */*\r\ncontent-length: 3\r\n\r\n"
        );
        headers.clear();
        headers.insert(header::HOST, HeaderValue::from_static("given"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.clear();
        write_request_head(
            &mut out,
            &Method::GET,
            "/",
            "x",
            &headers,
            RequestFraming::Chunked,
        );
        assert_eq!(
            &out[..],
            b"GET / HTTP/1.1\r\nhost: given\r\nconnection: upgrade\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn trailers_parse_without_framing_fields() {
        let t = parse_trailers(b"grpc-status: 0\r\ncontent-length: 5\r\ngrpc-message: ok\r\n")
            .expect("valid");
        assert_eq!(t.len(), 2);
        assert_eq!(t["grpc-status"], "0");
        assert!(parse_trailers(b"bad name: x\r\n").is_err());
        assert!(parse_trailers(b"").expect("empty").is_empty());
    }
}
