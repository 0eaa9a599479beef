//! The HTTP/1.1 request-head codec (RFC 9112), sans-IO.
//!
//! [`parse_request_head`] turns the bytes at the front of a connection's
//! read buffer into a [`RequestHead`]: method, target, version, header
//! fields, and the framing of the body that follows. It is a pure function of
//! the buffer: it never reads, waits, or keeps state between calls, so the
//! session calls it again with a longer buffer after every read that ended in
//! [`Parse::Partial`]. A session uses [`parse_request_head_with`], which also
//! takes the connection's [`HostMemo`]: a memo of the last Host field checked,
//! which saves work and never changes an outcome.
//!
//! What it refuses:
//! * anything that would make the message's framing ambiguous (RFC 9112 §6.3:
//!   Transfer-Encoding with Content-Length, differing Content-Lengths,
//!   `chunked` not last, Transfer-Encoding in HTTP/1.0) — the session answers
//!   the error and closes;
//! * heads larger than [`H1Limits`]: a [`Parse::Partial`] is never returned
//!   for a buffer that already exceeds them, so the session's read buffer is
//!   bounded by [`H1Limits::max_head_len`];
//! * obsolete line folding and whitespace before a field's colon
//!   (RFC 9112 §5.1, §5.2).
//!
//! Line endings follow httparse: CRLF, or a bare LF, which RFC 9112 §2.2
//! permits ("a recipient MAY recognize a single LF as a line terminator and
//! ignore any preceding CR"). A bare CR is rejected.
//!
//! Tokenizing is httparse's (SIMD where available); this module adds the
//! limits, the request-target forms (§3.2), Host (§3.2), and the body-framing
//! rules (§6). Bodies are decoded elsewhere: [`crate::chunked`] for chunked
//! bodies, a byte count for Content-Length.

pub(crate) mod fields;
mod target;
#[cfg(test)]
mod tests;

use std::fmt;
use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use fields::{ConnectionOptions, TransferCoding};

/// Size limits for one request head. A head that exceeds one is refused
/// with the matching status before it is fully received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H1Limits {
    /// Longest request line, without its line ending (414 beyond).
    pub max_request_line: usize,
    /// Largest header section: every field line with its line ending, and
    /// the empty line that ends the head (431 beyond).
    pub max_header_bytes: usize,
    /// Most header field lines (431 beyond).
    pub max_headers: usize,
}

impl Default for H1Limits {
    /// nginx-like defaults: an 8 KiB request line, 16 KiB of fields, 100 fields.
    fn default() -> Self {
        H1Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

impl H1Limits {
    /// The largest buffer for which [`parse_request_head`] may answer
    /// [`Parse::Partial`]: a session that has buffered more than this without
    /// getting a decision has a bug, not a slow client.
    pub fn max_head_len(&self) -> usize {
        MAX_LEADING_EMPTY_LINE_BYTES
            .saturating_add(self.max_request_line)
            .saturating_add(2)
            .saturating_add(self.max_header_bytes)
    }
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Neither Content-Length nor Transfer-Encoding: "If this is a request
    /// message and none of the above are true, then the message body length
    /// is zero (no message body is present)" (§6.3).
    None,
    /// `Content-Length: n` (`Length(0)` when the client said 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`crate::ChunkedDecoder`].
    Chunked,
}

/// A parsed, validated request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method token (RFC 9112 §3.1); extension methods are kept as sent.
    pub method: Method,
    /// The path, still percent-encoded: the origin-form path, the path of an
    /// absolute-form target (`/` when it had none), or `*` for the
    /// asterisk-form.
    pub path: String,
    /// The query without its `?`, when the target had one (possibly empty).
    pub query: Option<String>,
    /// [`Version::HTTP_10`] or [`Version::HTTP_11`].
    pub version: Version,
    /// The authority the request is for, ASCII-lowercased, with its port if
    /// one was sent: the absolute-form target's authority if there was one
    /// (§3.2.2), else the Host field. `None` when neither was sent (HTTP/1.0)
    /// or Host was empty.
    pub host: Option<String>,
    /// Every field as received (names lowercased), including Host and the
    /// framing fields.
    pub headers: HeaderMap,
    /// How the body that follows the head is delimited.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this one
    /// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request: send
    /// [`crate::write_continue`] before reading the body.
    pub expect_continue: bool,
    /// `Connection` names the `upgrade` option: the request may ask to switch protocols
    /// (checking this first spares every other request a lookup of `Upgrade`).
    pub connection_upgrade: bool,
}

/// The outcome of one parse attempt.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per request and moved straight into the session; boxing would add an allocation on the hot path"
)]
pub enum Parse {
    /// A whole head, and the number of bytes it took from the front of the
    /// buffer (the body, or the next request, starts there).
    Complete(RequestHead, usize),
    /// The head is not complete yet, and what is there is acceptable so far.
    Partial,
}

/// Why a request head is refused. Every variant is the peer's fault; the
/// session answers [`RequestError::status`] and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 400: malformed syntax or ambiguous framing; the text says which.
    BadRequest(&'static str),
    /// 414: the request line is longer than [`H1Limits::max_request_line`].
    UriTooLong,
    /// 431: too many header fields, or too many bytes of them.
    HeaderFieldsTooLarge,
    /// 417: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// 501: a transfer coding or method this server does not implement.
    NotImplemented(&'static str),
    /// 505: a well-formed HTTP version other than 1.x.
    VersionNotSupported,
}

impl RequestError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::UriTooLong => StatusCode::URI_TOO_LONG,
            RequestError::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            RequestError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            RequestError::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadRequest(why) => write!(f, "bad request: {why}"),
            RequestError::UriTooLong => f.write_str("request line too long"),
            RequestError::HeaderFieldsTooLarge => f.write_str("header fields too large"),
            RequestError::ExpectationFailed => f.write_str("unsupported expectation"),
            RequestError::NotImplemented(what) => write!(f, "not implemented: {what}"),
            RequestError::VersionNotSupported => f.write_str("HTTP version not supported"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Empty lines tolerated before the request line, in bytes. RFC 9112 §2.2:
/// "a server that is expecting to receive and parse a request-line SHOULD
/// ignore at least one empty line (CRLF) received prior to the request-line."
/// Enough for a few stray CRLFs after a body; more is garbage.
const MAX_LEADING_EMPTY_LINE_BYTES: usize = 8;

/// Header slots kept on the stack; larger `max_headers` use a heap array.
const STACK_HEADER_SLOTS: usize = 128;

/// Parses the request head at the front of `buf`.
///
/// Returns [`Parse::Complete`] with the head and the bytes it took,
/// [`Parse::Partial`] when more bytes are needed (never for a buffer longer
/// than [`H1Limits::max_head_len`]), or the reason to refuse the request.
pub fn parse_request_head(buf: &[u8], limits: &H1Limits) -> Result<Parse, RequestError> {
    parse_request_head_with(buf, limits, &mut HostMemo::default())
}

/// The Host field a connection sent last and what it validated to.
///
/// Clients send the same Host on every request of a connection, and checking
/// and lowercasing it costs more than the rest of a small head; when the bytes
/// are the same as last time, the answer is reused. The outcome is always the
/// one a fresh check would give.
#[derive(Debug, Clone, Default)]
pub struct HostMemo {
    /// The field's bytes as received; empty when nothing is remembered.
    raw: Vec<u8>,
    /// What [`target::host`] made of them.
    host: Option<String>,
}

/// Longer Host fields are checked every time rather than remembered.
const HOST_MEMO_MAX: usize = 256;

impl HostMemo {
    fn host(&mut self, field: &[u8]) -> Result<Option<String>, RequestError> {
        if !field.is_empty() && self.raw == field {
            return Ok(self.host.clone());
        }
        let host = target::host(field)?;
        if field.len() <= HOST_MEMO_MAX {
            self.raw.clear();
            self.raw.extend_from_slice(field);
            self.host.clone_from(&host);
        }
        Ok(host)
    }
}

/// [`parse_request_head`], remembering the connection's Host field in `memo`.
pub fn parse_request_head_with(
    buf: &[u8],
    limits: &H1Limits,
    memo: &mut HostMemo,
) -> Result<Parse, RequestError> {
    // Cheap checks first: find the line ends with memchr and enforce the
    // limits before httparse looks at anything.
    let Some(start) = skip_leading_empty_lines(buf)? else {
        return Ok(Parse::Partial);
    };
    let rest = buf.get(start..).unwrap_or_default();
    // Bytes within both limits cannot hold a request line or a header
    // section beyond them (the usual case: a head or a few pipelined ones),
    // so httparse alone finds where the head ends.
    if rest.len() <= limits.max_request_line && rest.len() <= limits.max_header_bytes {
        return Ok(match tokenize(rest, limits, |req| build_head(req, memo))? {
            Some((head, len)) => Parse::Complete(head, start + len),
            None => Parse::Partial,
        });
    }
    let head_len = match locate_head(rest, limits)? {
        HeadExtent::Complete(len) => len,
        HeadExtent::Incomplete => {
            // Run httparse on what is there anyway, so that garbage is
            // refused now rather than after the limits are reached.
            return match tokenize(rest, limits, |_| Ok(()))? {
                Some(_) => Err(RequestError::BadRequest("request head ends early")),
                None => Ok(Parse::Partial),
            };
        }
    };
    let head = rest.get(..head_len).unwrap_or_default();
    match tokenize(head, limits, |req| build_head(req, memo))? {
        Some((parsed, _)) => Ok(Parse::Complete(parsed, start + head_len)),
        // httparse and `locate_head` agree on where a head ends; if they ever
        // do not, refuse rather than wait for bytes that change nothing.
        None => Err(RequestError::BadRequest("malformed request head")),
    }
}

/// Skips the empty lines allowed before a request line (RFC 9112 §2.2).
/// `Ok(None)` when the buffer holds nothing else yet.
fn skip_leading_empty_lines(buf: &[u8]) -> Result<Option<usize>, RequestError> {
    let mut at = 0;
    loop {
        let step = match buf.get(at..) {
            Some([b'\r', b'\n', ..]) => 2,
            Some([b'\n', ..]) => 1,
            Some([b'\r']) | Some([]) | None => return Ok(None),
            Some([b'\r', ..]) => {
                return Err(RequestError::BadRequest("bare CR before request line"));
            }
            Some(_) => return Ok(Some(at)),
        };
        at += step;
        if at > MAX_LEADING_EMPTY_LINE_BYTES {
            return Err(RequestError::BadRequest(
                "too many empty lines before request line",
            ));
        }
    }
}

/// Where the head ends, as far as line structure tells.
enum HeadExtent {
    /// The head, empty line included, is this many bytes long.
    Complete(usize),
    /// No empty line yet, and the limits are not exceeded.
    Incomplete,
}

/// Finds the request line and the empty line that ends the head, and
/// enforces the size limits on both, whether or not the head is complete.
fn locate_head(rest: &[u8], limits: &H1Limits) -> Result<HeadExtent, RequestError> {
    // The request line may be `max_request_line` bytes plus CR LF.
    let window = rest
        .get(..limits.max_request_line.saturating_add(2))
        .unwrap_or(rest);
    let Some(line_lf) = memchr::memchr(b'\n', window) else {
        // RFC 9112 §3: "A server that receives a request-target longer than
        // any URI it wishes to parse MUST respond with a 414 (URI Too Long)
        // status code." A trailing CR may still be the start of the line end.
        let line_so_far = window.len() - usize::from(window.ends_with(b"\r"));
        if window.len() < rest.len() || line_so_far > limits.max_request_line {
            return Err(RequestError::UriTooLong);
        }
        return Ok(HeadExtent::Incomplete);
    };
    let line_len = line_lf - usize::from(window.get(..line_lf).is_some_and(|l| l.ends_with(b"\r")));
    if line_len > limits.max_request_line {
        return Err(RequestError::UriTooLong);
    }
    let fields_start = line_lf + 1;
    let fields = rest.get(fields_start..).unwrap_or_default();
    match find_empty_line(fields) {
        Some(end) if end > limits.max_header_bytes => Err(RequestError::HeaderFieldsTooLarge),
        Some(end) => Ok(HeadExtent::Complete(fields_start + end)),
        None if fields.len() > limits.max_header_bytes => Err(RequestError::HeaderFieldsTooLarge),
        None => Ok(HeadExtent::Incomplete),
    }
}

/// Finds the end of the header section: the byte after the empty line that
/// closes it (CRLF or LF). `fields` starts right after the request line, so
/// an empty line may also be its very first line.
fn find_empty_line(fields: &[u8]) -> Option<usize> {
    match fields {
        [b'\n', ..] => return Some(1),
        [b'\r', b'\n', ..] => return Some(2),
        _ => {}
    }
    for lf in memchr::memchr_iter(b'\n', fields) {
        match fields.get(lf + 1..) {
            Some([b'\n', ..]) => return Some(lf + 2),
            Some([b'\r', b'\n', ..]) => return Some(lf + 3),
            _ => {}
        }
    }
    None
}

/// Runs httparse over `bytes` (which start at the request line) and hands a
/// complete result to `finish`, whose output comes back with the length of
/// the head. `Ok(None)` is httparse's Partial.
fn tokenize<T>(
    bytes: &[u8],
    limits: &H1Limits,
    finish: impl FnMut(&httparse::Request<'_, '_>) -> Result<T, RequestError>,
) -> Result<Option<(T, usize)>, RequestError> {
    tokenize_once(bytes, limits, finish, true)
}

fn tokenize_once<T>(
    bytes: &[u8],
    limits: &H1Limits,
    mut finish: impl FnMut(&httparse::Request<'_, '_>) -> Result<T, RequestError>,
    may_retry_as_1_1: bool,
) -> Result<Option<(T, usize)>, RequestError> {
    let outcome = if limits.max_headers <= STACK_HEADER_SLOTS {
        let mut slots =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADER_SLOTS];
        let slots = slots.get_mut(..limits.max_headers).unwrap_or_default();
        tokenize_into(bytes, slots, &mut finish)
    } else {
        let mut slots = Vec::with_capacity(limits.max_headers);
        slots.resize_with(limits.max_headers, MaybeUninit::uninit);
        tokenize_into(bytes, &mut slots, &mut finish)
    };
    match outcome {
        Err(Tokenize::Refused(err)) => Err(err),
        Err(Tokenize::Version) => match classify_version(bytes) {
            VersionToken::Incomplete => Ok(None),
            VersionToken::Malformed => Err(RequestError::BadRequest("invalid HTTP version")),
            VersionToken::OtherMajor => Err(RequestError::VersionNotSupported),
            VersionToken::HigherMinor(at) if may_retry_as_1_1 => {
                // RFC 9110 §2.5: "When an HTTP message is received with a
                // major version number that the recipient implements, but a
                // higher minor version number than what the recipient
                // implements, the recipient SHOULD process the message as if
                // it were in the highest minor version within that major
                // version to which the recipient is conformant." httparse
                // knows only 1.0 and 1.1, so parse a copy that says 1.1.
                // Rare enough that the copy does not matter.
                let mut copy = bytes.to_vec();
                match copy.get_mut(at) {
                    Some(minor) => *minor = b'1',
                    None => return Err(RequestError::BadRequest("invalid HTTP version")),
                }
                tokenize_once(&copy, limits, finish, false)
            }
            VersionToken::HigherMinor(_) => Err(RequestError::BadRequest("invalid request line")),
        },
        Ok(parsed) => Ok(parsed),
    }
}

/// Why httparse stopped short of a result.
enum Tokenize {
    /// A syntax error or a limit: final.
    Refused(RequestError),
    /// httparse refused the version token; [`classify_version`] says why.
    Version,
}

fn tokenize_into<'b, T>(
    bytes: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    finish: &mut impl FnMut(&httparse::Request<'_, '_>) -> Result<T, RequestError>,
) -> Result<Option<(T, usize)>, Tokenize> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(bytes, slots) {
        Ok(httparse::Status::Complete(len)) => finish(&req)
            .map(|done| Some((done, len)))
            .map_err(Tokenize::Refused),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::Version) => Err(Tokenize::Version),
        Err(err) => Err(Tokenize::Refused(map_httparse_error(err))),
    }
}

fn map_httparse_error(err: httparse::Error) -> RequestError {
    match err {
        // RFC 9112 §5.1: "No whitespace is allowed between the field name
        // and colon. ... A server MUST reject, with a response status code of
        // 400 (Bad Request), any received request message that contains
        // whitespace between a header field name and colon." httparse also
        // reports obsolete line folding here (§5.2: "A server that receives
        // an obs-fold in a request message ... MUST either reject the message
        // by sending a 400 (Bad Request)" or replace it; we reject).
        httparse::Error::HeaderName => RequestError::BadRequest("invalid header field name"),
        httparse::Error::HeaderValue => RequestError::BadRequest("invalid header field value"),
        httparse::Error::NewLine => RequestError::BadRequest("invalid line ending"),
        httparse::Error::Token => RequestError::BadRequest("invalid request line"),
        httparse::Error::TooManyHeaders => RequestError::HeaderFieldsTooLarge,
        httparse::Error::Version => RequestError::BadRequest("invalid HTTP version"),
        httparse::Error::Status => RequestError::BadRequest("invalid request"),
    }
}

/// What the version token of a request line httparse refused is.
enum VersionToken {
    /// The line has not ended and the token may still become well-formed.
    Incomplete,
    /// Not `HTTP/DIGIT.DIGIT`.
    Malformed,
    /// A well-formed version of another major: 505.
    OtherMajor,
    /// `HTTP/1.x` with x > 1; the minor digit is at this index.
    HigherMinor(usize),
}

/// httparse only knows `HTTP/1.0` and `HTTP/1.1`: tell a well-formed other
/// version from a malformed one.
fn classify_version(bytes: &[u8]) -> VersionToken {
    let line_end = memchr::memchr(b'\n', bytes);
    let line = match line_end {
        Some(lf) => bytes.get(..lf).unwrap_or_default(),
        None => bytes,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
    // Neither method nor target holds a space, so the version is everything
    // after the second one, and holds none itself.
    let mut spaces = memchr::memchr_iter(b' ', line);
    let (Some(_), Some(second)) = (spaces.next(), spaces.next()) else {
        return VersionToken::Malformed;
    };
    if spaces.next().is_some() {
        return VersionToken::Malformed;
    }
    let token = line.get(second + 1..).unwrap_or_default();
    // RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, where
    // HTTP-name = %s"HTTP" (case-sensitive).
    let well_formed = |t: &[u8]| matches!(t, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit());
    if line_end.is_none() {
        let mut padded = *b"HTTP/0.0";
        let could_be = padded.get_mut(..token.len()).is_some_and(|p| {
            p.copy_from_slice(token);
            true
        }) && well_formed(&padded);
        return if could_be {
            VersionToken::Incomplete
        } else {
            VersionToken::Malformed
        };
    }
    match token {
        _ if !well_formed(token) => VersionToken::Malformed,
        // RFC 9110 §15.6.6: 505 "indicates that the server does not support,
        // or refuses to support, the major version of HTTP that was used in
        // the request message".
        [.., major, b'.', _] if *major != b'1' => VersionToken::OtherMajor,
        [.., minor] if *minor >= b'2' => VersionToken::HigherMinor(line.len() - 1),
        _ => VersionToken::Malformed,
    }
}

/// Builds and validates the head from httparse's complete output.
fn build_head(
    req: &httparse::Request<'_, '_>,
    memo: &mut HostMemo,
) -> Result<RequestHead, RequestError> {
    let (Some(method), Some(raw_target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::BadRequest("incomplete request line"));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| RequestError::BadRequest("invalid method"))?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    // Room for the fields a proxied request gains (X-Forwarded-*, Via) without a rehash.
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 4);
    let mut host_field: Option<&[u8]> = None;
    let mut content_length: Option<u64> = None;
    let mut coding = TransferCoding::default();
    let mut connection = ConnectionOptions::default();
    let mut expect_continue = false;

    for field in req.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| RequestError::BadRequest("invalid header field name"))?;
        let value = field.value;
        if name == header::HOST {
            // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request)
            // status code to any HTTP/1.1 request message that lacks a Host
            // header field and to any request message that contains more
            // than one Host header field line or a Host header field with an
            // invalid field value."
            if host_field.is_some() {
                return Err(RequestError::BadRequest("more than one Host field"));
            }
            host_field = Some(value);
        } else if name == header::CONTENT_LENGTH {
            content_length = Some(fields::content_length(value, content_length)?);
        } else if name == header::TRANSFER_ENCODING {
            coding = fields::transfer_coding(value, coding)?;
        } else if name == header::CONNECTION {
            connection.add(value);
        } else if name == header::EXPECT {
            expect_continue |= fields::expect(value)?;
        }
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| RequestError::BadRequest("invalid header field value"))?;
        headers.append(name, value);
    }

    if host_field.is_none() && version == Version::HTTP_11 {
        // §3.2: a Host field is required in HTTP/1.1, absolute-form or not.
        return Err(RequestError::BadRequest("HTTP/1.1 request without Host"));
    }
    let target = target::parse(&method, raw_target)?;
    let host = match (target.authority, host_field) {
        // RFC 9112 §3.2.2: "When an origin server receives a request with an
        // absolute-form of request-target, the origin server MUST ignore the
        // received Host header field (if any) and instead use the host
        // information of the request-target." The Host field must still be
        // valid (§3.2, quoted above).
        (Some(authority), field) => {
            if let Some(field) = field {
                memo.host(field)?;
            }
            Some(authority)
        }
        (None, Some(field)) => memo.host(field)?,
        (None, None) => None,
    };

    let body = body_kind(version, content_length, coding)?;
    let keep_alive = connection.keep_alive(version);
    // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation
    // in an HTTP/1.0 request MUST ignore that expectation."
    let expect_continue = expect_continue && version == Version::HTTP_11;

    Ok(RequestHead {
        method,
        path: target.path,
        query: target.query,
        version,
        host,
        headers,
        body,
        keep_alive,
        expect_continue,
        connection_upgrade: connection.upgrade(),
    })
}

/// The body framing rules of RFC 9112 §6.
fn body_kind(
    version: Version,
    content_length: Option<u64>,
    coding: TransferCoding,
) -> Result<BodyKind, RequestError> {
    if !coding.is_present() {
        return Ok(content_length.map_or(BodyKind::None, BodyKind::Length));
    }
    // §6.1: "A server or client that receives an HTTP/1.0 message containing
    // a Transfer-Encoding header field MUST treat the message as if the
    // framing is faulty, even if a Content-Length is present, and close the
    // connection after processing the message."
    if version == Version::HTTP_10 {
        return Err(RequestError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    // §6.1: "A server MAY reject a request that contains both Content-Length
    // and Transfer-Encoding or process such a request in accordance with the
    // Transfer-Encoding alone." We reject: it is the shape of a
    // request-smuggling attempt.
    if content_length.is_some() {
        return Err(RequestError::BadRequest(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    coding.body_kind()
}
