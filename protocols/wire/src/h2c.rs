//! `Upgrade: h2c`: switching a cleartext HTTP/1.1 connection to HTTP/2 (RFC 7540 §3.2).
//!
//! RFC 9113 §3.1 deprecates the upgrade, but clients still use it (`curl --http2` on an
//! `http://` URL). The request that carried the upgrade is answered on stream 1 of the new
//! HTTP/2 connection. HTTP/2 libraries only know streams their peer opened, so we let the
//! library see that request as if the client had opened stream 1 itself: after the client's
//! connection preface and its first SETTINGS frame, a HEADERS frame is inserted (see [`splice_at`])
//! frame carrying the request. Its header block uses only literal fields *without indexing*
//! (RFC 7541 §6.2.2), so the decoder's dynamic table — shared with the client's encoder — is
//! left exactly as the client expects.
//!
//! Everything here is sans-IO: [`upgrade_request`] decides from a parsed head, [`stream_one`]
//! builds the frame, [`splice_at`] tells the reader where the frame goes.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, header};

use crate::h1::{BodyKind, RequestHead};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
/// Every HTTP/2 frame starts with a 9-byte header (RFC 9113 §4.1).
const FRAME_HEADER_LEN: usize = 9;
/// The largest frame any HTTP/2 endpoint must accept (SETTINGS_MAX_FRAME_SIZE's initial value).
const MIN_MAX_FRAME: usize = 16_384;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// Whether `head` asks to upgrade to h2c in a way we accept.
///
/// RFC 7540 §3.2: the request carries `Upgrade: h2c`, `Connection: Upgrade, HTTP2-Settings`
/// and exactly one `HTTP2-Settings` field (§3.2.1: "A server MUST NOT upgrade the connection
/// to HTTP/2 if this header field is not present or if more than one is present"), whose value
/// is base64url of a SETTINGS payload (a multiple of 6 bytes). We upgrade only requests without
/// a body: the body would otherwise have to be read before switching, which RFC 7540 allows us
/// to decline by simply answering in HTTP/1.1.
pub fn upgrade_request(head: &RequestHead) -> bool {
    if !head.connection_upgrade
        || head.version != http::Version::HTTP_11
        || !matches!(head.body, BodyKind::None | BodyKind::Length(0))
    {
        return false;
    }
    let has_token = |name: header::HeaderName, token: &str| {
        head.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "h2c")
        || !has_token(header::CONNECTION, "upgrade")
        || !has_token(header::CONNECTION, "http2-settings")
    {
        return false;
    }
    let mut settings = head.headers.get_all("http2-settings").iter();
    match (settings.next(), settings.next()) {
        (Some(value), None) => base64url_len(value.as_bytes()).is_some_and(|n| n % 6 == 0),
        _ => false,
    }
}

/// The decoded length of a base64url value without padding, if it is one.
fn base64url_len(value: &[u8]) -> Option<usize> {
    let value = value
        .strip_suffix(b"==")
        .or_else(|| value.strip_suffix(b"="))
        .unwrap_or(value);
    if !value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        || value.len() % 4 == 1
    {
        return None;
    }
    Some(value.len() * 3 / 4)
}

/// A HEADERS frame opening stream 1 with the upgraded request (END_STREAM | END_HEADERS), or
/// `None` if its header block does not fit one frame of the minimum maximum size, in which case
/// the request should be answered in HTTP/1.1 instead.
pub fn stream_one(head: &RequestHead) -> Option<Bytes> {
    let mut block = BytesMut::with_capacity(256);
    let path = match &head.query {
        Some(query) => format!("{}?{query}", head.path),
        None => head.path.clone(),
    };
    literal(&mut block, b":method", head.method.as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    if head.method != Method::CONNECT {
        literal(&mut block, b":path", path.as_bytes());
    }
    if let Some(host) = &head.host {
        literal(&mut block, b":authority", host.as_bytes());
    }
    for (name, value) in fields(&head.headers) {
        literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
    }
    if block.len() > MIN_MAX_FRAME {
        return None;
    }
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + block.len());
    let len = u32::try_from(block.len()).ok()?;
    frame.put_slice(&len.to_be_bytes()[1..]);
    frame.put_u8(FRAME_HEADERS);
    frame.put_u8(FLAG_END_STREAM | FLAG_END_HEADERS);
    frame.put_u32(1);
    frame.put_slice(&block);
    Some(frame.freeze())
}

/// The request's fields minus those HTTP/2 forbids (RFC 9113 §8.2.2) or that belong to the
/// upgrade itself; `Host` travels as `:authority`.
fn fields(headers: &HeaderMap) -> impl Iterator<Item = (&header::HeaderName, &http::HeaderValue)> {
    headers.iter().filter(|(name, value)| {
        !matches!(
            name.as_str(),
            "connection"
                | "upgrade"
                | "http2-settings"
                | "host"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
        ) && (*name != header::TE || value.as_bytes().eq_ignore_ascii_case(b"trailers"))
    })
}

/// RFC 7541 §6.2.2: literal header field without indexing, new name, no Huffman coding.
fn literal(block: &mut BytesMut, name: &[u8], value: &[u8]) {
    block.put_u8(0x00);
    string(block, name);
    string(block, value);
}

/// RFC 7541 §5.2 string literal (H = 0) with its §5.1 7-bit-prefix length.
fn string(block: &mut BytesMut, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 0x7f {
        block.put_u8(len as u8);
    } else {
        block.put_u8(0x7f);
        len -= 0x7f;
        while len >= 0x80 {
            block.put_u8((len % 0x80) as u8 | 0x80);
            len /= 0x80;
        }
        block.put_u8(len as u8);
    }
    block.put_slice(bytes);
}

/// What [`splice_at`] can say about a prefix of the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Splice {
    /// Not enough bytes yet.
    NeedMore,
    /// Insert after this many bytes.
    At(usize),
    /// The client did not start with a preface and a SETTINGS frame: insert nothing, let the
    /// HTTP/2 library answer with the connection error it owes.
    Never,
}

/// Where, in the bytes the client sends after the 101, stream 1's HEADERS frame belongs: right
/// after the preface and the first frame, which RFC 9113 §3.4 requires to be SETTINGS.
pub fn splice_at(prefix: &[u8]) -> Splice {
    let Some(header) = prefix.get(PREFACE_LEN..PREFACE_LEN + FRAME_HEADER_LEN) else {
        return Splice::NeedMore;
    };
    if header[3] != FRAME_SETTINGS {
        return Splice::Never;
    }
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if len > MIN_MAX_FRAME {
        return Splice::Never;
    }
    Splice::At(PREFACE_LEN + FRAME_HEADER_LEN + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::{H1Limits, Parse, parse_request_head};

    fn head(raw: &str) -> RequestHead {
        match parse_request_head(raw.as_bytes(), &H1Limits::default()) {
            Ok(Parse::Complete(head, _)) => head,
            other => panic!("not a complete head: {other:?}"),
        }
    }

    const UPGRADE: &str = "GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                           Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAccept: */*\r\n\r\n";

    #[test]
    fn a_proper_upgrade_is_accepted() {
        assert!(upgrade_request(&head(UPGRADE)));
    }

    #[test]
    fn upgrades_we_decline() {
        let cases = [
            (
                "no HTTP2-Settings",
                UPGRADE.replace("HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", ""),
            ),
            (
                "two HTTP2-Settings",
                UPGRADE.replace(
                    "Accept: */*",
                    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAccept: */*",
                ),
            ),
            (
                "settings not base64url",
                UPGRADE.replace("AAMAAABkAARAAAAAAAIAAAAA", "not base64!"),
            ),
            (
                "settings not a multiple of 6 bytes",
                UPGRADE.replace("AAMAAABkAARAAAAAAAIAAAAA", "AAMA"),
            ),
            (
                "no Connection: HTTP2-Settings",
                UPGRADE.replace("Upgrade, HTTP2-Settings", "Upgrade"),
            ),
            (
                "another protocol",
                UPGRADE.replace("Upgrade: h2c", "Upgrade: websocket"),
            ),
            (
                "h2 (TLS) token",
                UPGRADE.replace("Upgrade: h2c", "Upgrade: h2"),
            ),
            (
                "a body",
                UPGRADE.replace("Accept: */*", "Content-Length: 3"),
            ),
            ("HTTP/1.0", UPGRADE.replace("HTTP/1.1", "HTTP/1.0")),
        ];
        for (what, raw) in cases {
            assert!(!upgrade_request(&head(&raw)), "{what}");
        }
    }

    #[test]
    fn stream_one_is_a_headers_frame_of_literals() {
        let frame = stream_one(&head(UPGRADE)).expect("fits one frame");
        let len = usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]);
        assert_eq!(len, frame.len() - FRAME_HEADER_LEN);
        assert_eq!(frame[3], FRAME_HEADERS);
        assert_eq!(frame[4], FLAG_END_STREAM | FLAG_END_HEADERS);
        assert_eq!(&frame[5..9], &[0, 0, 0, 1]);
        let block = &frame[9..];
        // First field: literal without indexing, new name ":method", value "GET".
        assert_eq!(&block[..13], b"\x00\x07:method\x03GET");
        let text = String::from_utf8_lossy(block);
        assert!(text.contains(":path\x06/a?b=1"), "{text:?}");
        assert!(text.contains(":authority\x0cexample.test"), "{text:?}");
        assert!(text.contains("accept\x03*/*"), "{text:?}");
        for gone in ["upgrade", "http2-settings", "connection", "host\x0c"] {
            assert!(
                !text.contains(gone),
                "{gone} must not be forwarded: {text:?}"
            );
        }
    }

    #[test]
    fn long_strings_use_the_integer_continuation() {
        let mut block = BytesMut::new();
        string(&mut block, &[b'x'; 300]);
        // RFC 7541 §5.1: 300 = 127 + 173, and 173 is sent 7 bits at a time, low bits first:
        // 173 % 128 = 45 with the continuation bit, then 173 / 128 = 1.
        assert_eq!(&block[..3], &[0x7f, 45 | 0x80, 1]);
        assert_eq!(block.len(), 3 + 300);
    }

    #[test]
    fn an_oversized_request_is_not_upgraded() {
        let raw = UPGRADE.replace("Accept: */*", &format!("X-Big: {}", "y".repeat(17_000)));
        let limits = H1Limits {
            max_header_bytes: 64 * 1024,
            ..H1Limits::default()
        };
        let Ok(Parse::Complete(head, _)) = parse_request_head(raw.as_bytes(), &limits) else {
            panic!("parse");
        };
        assert!(stream_one(&head).is_none());
    }

    #[test]
    fn the_splice_goes_after_the_preface_and_the_first_settings_frame() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        assert_eq!(splice_at(&bytes), Splice::NeedMore);
        bytes.extend_from_slice(&[0, 0, 6, FRAME_SETTINGS, 0, 0, 0, 0, 0]);
        assert_eq!(splice_at(&bytes), Splice::At(24 + 9 + 6));
        for cut in 0..bytes.len() {
            assert_eq!(
                splice_at(&bytes[..cut]),
                Splice::NeedMore,
                "prefix of {cut}"
            );
        }
        let mut not_settings = bytes.clone();
        not_settings[24 + 3] = FRAME_HEADERS;
        assert_eq!(splice_at(&not_settings), Splice::Never);
    }
}
