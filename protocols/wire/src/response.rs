//! Response head encoder for HTTP/1.x.
//!
//! [`write_response_head`] appends a complete head to the connection's write
//! buffer. The framing of the body is the caller's decision, given as a
//! [`Framing`]; the encoder writes the one header that states it and drops
//! any framing or connection header the caller's map still carries, so the
//! head can never contradict the bytes that follow it. `Server` and `Date` are
//! always ours for the same reason (each is a singleton field).
//!
//! The status line always says `HTTP/1.1`, also to HTTP/1.0 clients: RFC 9110
//! §6.2, "A server SHOULD send a response version equal to the highest
//! version to which the server is conformant that has a major version less
//! than or equal to the one received in the request."

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};

/// How the response body is delimited on the wire (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`, then exactly n bytes (none for a HEAD request).
    Length(u64),
    /// `Transfer-Encoding: chunked`: HTTP/1.1 requests only. For an HTTP/1.0
    /// request it is written as [`Framing::Close`] (RFC 9112 §6.1: "A server
    /// MUST NOT send a response containing Transfer-Encoding unless the
    /// corresponding request indicates HTTP/1.1"); use
    /// [`Framing::unknown_length`] to pick the right one.
    Chunked,
    /// No body: 1xx, 204 and 304 responses. With any other status it is
    /// written as `Content-Length: 0`.
    None,
    /// The body ends when the server closes the connection: `Connection:
    /// close`, no length. The only streaming framing an HTTP/1.0 client
    /// understands.
    Close,
}

impl Framing {
    /// The framing for a body of unknown length: chunked for HTTP/1.1,
    /// close-delimited for HTTP/1.0.
    pub fn unknown_length(version: Version) -> Framing {
        if version == Version::HTTP_10 {
            Framing::Close
        } else {
            Framing::Chunked
        }
    }
}

/// Appends one field line, `name: value\r\n`. The caller vouches for the bytes (a
/// `HeaderName`/`HeaderValue`, or a field a parser checked).
pub fn put_field(dst: &mut impl BufMut, name: &[u8], value: &[u8]) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// The caller's fields: a run of pre-rendered field lines (each ending in CRLF; written as they
/// are, so they must not hold a field this encoder owns), then a map.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub lines: &'a [u8],
    pub map: &'a HeaderMap,
}

impl<'a> Fields<'a> {
    /// Only a map.
    pub fn map(map: &'a HeaderMap) -> Fields<'a> {
        Fields { lines: &[], map }
    }
}

/// The fields every response of the server carries, whatever the caller's map says.
#[derive(Debug, Clone, Copy)]
pub struct ServerFields<'a> {
    /// A preformatted IMF-fixdate (RFC 9110 §5.6.7), which the session caches once a second.
    pub date: &'a [u8],
    /// The server's `Alt-Svc` (HTTP/3 on the same port), replacing any the caller's map holds.
    pub alt_svc: Option<&'a HeaderValue>,
}

/// Appends a response head: status line, `Server`, `Date`, the server's
/// `Alt-Svc` if it has one, the caller's pre-rendered lines, the caller's map (less Content-Length,
/// Transfer-Encoding, Connection, Server, Date, and Alt-Svc when the server
/// sends its own), the framing header, the connection header and the empty
/// line.
///
/// `version` is the request's version. With
/// `keep_alive == false` the head says `Connection: close` and the session
/// must close after the body; HTTP/1.0 keep-alive is confirmed with
/// `Connection: keep-alive`. For `101 Switching Protocols` the caller's
/// `Connection` (and `Upgrade`) headers are kept and no framing is written.
pub fn write_response_head(
    dst: &mut BytesMut,
    version: Version,
    status: StatusCode,
    fields: Fields<'_>,
    framing: Framing,
    keep_alive: bool,
    ours: &ServerFields<'_>,
) {
    let ServerFields { date, alt_svc } = *ours;
    let Fields {
        lines,
        map: headers,
    } = fields;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let framing = effective_framing(version, status, framing);
    dst.reserve(128 + date.len() + lines.len() + headers.len() * 32);

    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    if status == StatusCode::OK {
        dst.put_slice(b"HTTP/1.1 200 OK\r\nServer: switchyard\r\nDate: ");
    } else {
        dst.put_slice(b"HTTP/1.1 ");
        dst.put_slice(status.as_str().as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
        dst.put_slice(b"\r\nServer: switchyard\r\nDate: ");
    }
    dst.put_slice(date);
    dst.put_slice(b"\r\n");
    if let Some(alt_svc) = alt_svc {
        dst.put_slice(b"Alt-Svc: ");
        dst.put_slice(alt_svc.as_bytes());
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(lines);

    for (name, value) in headers {
        let ours = name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (name == header::CONNECTION && !switching)
            || name == header::SERVER
            || name == header::DATE
            || (name == header::ALT_SVC && alt_svc.is_some());
        if ours {
            continue;
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }

    match framing {
        Some(Framing::Length(len)) => {
            dst.put_slice(b"Content-Length: ");
            dst.put_slice(itoa::Buffer::new().format(len).as_bytes());
            dst.put_slice(b"\r\n");
        }
        Some(Framing::Chunked) => dst.put_slice(b"Transfer-Encoding: chunked\r\n"),
        Some(Framing::None) | Some(Framing::Close) | None => {}
    }

    if !switching {
        // RFC 9112 §9.6: "A server that sends a "close" connection option
        // MUST initiate closure of the connection after it sends the response
        // containing the "close" connection option."
        if !keep_alive || framing == Some(Framing::Close) {
            dst.put_slice(b"Connection: close\r\n");
        } else if version == Version::HTTP_10 {
            dst.put_slice(b"Connection: keep-alive\r\n");
        }
    }
    dst.put_slice(b"\r\n");
}

/// The framing actually written, `None` for no framing header at all.
fn effective_framing(version: Version, status: StatusCode, framing: Framing) -> Option<Framing> {
    // RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in
    // any response with a status code of 1xx (Informational) or 204 (No
    // Content)." RFC 9112 §6.1: "A server MUST NOT send a Transfer-Encoding
    // header field in any response with a status code of 1xx (Informational)
    // or 204 (No Content)."
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        return None;
    }
    // A 304 has no body; it MAY carry the Content-Length a 200 would have
    // (RFC 9110 §8.6), never a transfer coding.
    if status == StatusCode::NOT_MODIFIED {
        return match framing {
            Framing::Length(len) => Some(Framing::Length(len)),
            _ => None,
        };
    }
    match framing {
        Framing::Chunked if version == Version::HTTP_10 => Some(Framing::Close),
        Framing::None => Some(Framing::Length(0)),
        other => Some(other),
    }
}

/// Appends the interim response that tells a client waiting on
/// `Expect: 100-continue` to send its body (RFC 9110 §10.1.1).
pub fn write_continue(dst: &mut BytesMut) {
    dst.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn head(
        version: Version,
        status: u16,
        headers: &HeaderMap,
        framing: Framing,
        keep_alive: bool,
    ) -> String {
        let mut dst = BytesMut::new();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        write_response_head(
            &mut dst,
            version,
            status,
            Fields::map(headers),
            framing,
            keep_alive,
            &ServerFields {
                date: DATE,
                alt_svc: None,
            },
        );
        String::from_utf8(dst.to_vec()).unwrap_or_default()
    }

    fn prelude(status_line: &str) -> String {
        format!("{status_line}\r\nServer: switchyard\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
    }

    #[test]
    fn exact_bytes() {
        let mut custom = HeaderMap::new();
        custom.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        custom.append("x-multi", HeaderValue::from_static("a"));
        custom.append("x-multi", HeaderValue::from_static("b"));
        let empty = HeaderMap::new();
        let v11 = Version::HTTP_11;
        let v10 = Version::HTTP_10;
        let cases: Vec<(String, String)> = vec![
            (
                head(v11, 200, &custom, Framing::Length(5), true),
                prelude("HTTP/1.1 200 OK")
                    + "content-type: text/plain\r\nx-multi: a\r\nx-multi: b\r\nContent-Length: 5\r\n\r\n",
            ),
            (
                head(v11, 200, &empty, Framing::Chunked, true),
                prelude("HTTP/1.1 200 OK") + "Transfer-Encoding: chunked\r\n\r\n",
            ),
            (
                head(v11, 404, &empty, Framing::Length(0), false),
                prelude("HTTP/1.1 404 Not Found")
                    + "Content-Length: 0\r\nConnection: close\r\n\r\n",
            ),
            (
                head(
                    v10,
                    200,
                    &empty,
                    Framing::Length(18446744073709551615),
                    true,
                ),
                prelude("HTTP/1.1 200 OK")
                    + "Content-Length: 18446744073709551615\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                head(v10, 200, &empty, Framing::Length(1), false),
                prelude("HTTP/1.1 200 OK") + "Content-Length: 1\r\nConnection: close\r\n\r\n",
            ),
            // Chunked cannot be sent to HTTP/1.0: close-delimited instead.
            (
                head(v10, 200, &empty, Framing::Chunked, true),
                prelude("HTTP/1.1 200 OK") + "Connection: close\r\n\r\n",
            ),
            (
                head(v11, 200, &empty, Framing::Close, true),
                prelude("HTTP/1.1 200 OK") + "Connection: close\r\n\r\n",
            ),
            // No framing for 204 and 1xx whatever the caller says.
            (
                head(v11, 204, &empty, Framing::Length(3), true),
                prelude("HTTP/1.1 204 No Content") + "\r\n",
            ),
            (
                head(v11, 204, &empty, Framing::None, true),
                prelude("HTTP/1.1 204 No Content") + "\r\n",
            ),
            // 304 may keep the length of the 200 it stands for.
            (
                head(v11, 304, &empty, Framing::None, true),
                prelude("HTTP/1.1 304 Not Modified") + "\r\n",
            ),
            (
                head(v11, 304, &empty, Framing::Length(9), true),
                prelude("HTTP/1.1 304 Not Modified") + "Content-Length: 9\r\n\r\n",
            ),
            (
                head(v11, 304, &empty, Framing::Chunked, true),
                prelude("HTTP/1.1 304 Not Modified") + "\r\n",
            ),
            // None for a status that has a body means an empty one.
            (
                head(v11, 200, &empty, Framing::None, true),
                prelude("HTTP/1.1 200 OK") + "Content-Length: 0\r\n\r\n",
            ),
            // Unknown status: empty reason phrase, trailing SP kept.
            (
                head(v11, 599, &empty, Framing::Length(0), true),
                prelude("HTTP/1.1 599 ") + "Content-Length: 0\r\n\r\n",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn callers_framing_and_singletons_are_dropped() {
        let mut stale = HeaderMap::new();
        stale.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        stale.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        stale.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        stale.insert(header::SERVER, HeaderValue::from_static("upstream"));
        stale.insert(header::DATE, HeaderValue::from_static("yesterday"));
        stale.insert(header::ETAG, HeaderValue::from_static("\"x\""));
        let got = head(Version::HTTP_11, 200, &stale, Framing::Length(2), false);
        assert_eq!(
            got,
            prelude("HTTP/1.1 200 OK")
                + "etag: \"x\"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn the_servers_alt_svc_replaces_the_callers() {
        let mut upstream = HeaderMap::new();
        upstream.insert(header::ALT_SVC, HeaderValue::from_static("h3=\":9\""));
        upstream.insert(header::ETAG, HeaderValue::from_static("\"x\""));
        let ours = HeaderValue::from_static("h3=\":443\"; ma=86400");
        let mut dst = BytesMut::new();
        write_response_head(
            &mut dst,
            Version::HTTP_11,
            StatusCode::OK,
            Fields::map(&upstream),
            Framing::Length(0),
            true,
            &ServerFields {
                date: DATE,
                alt_svc: Some(&ours),
            },
        );
        assert_eq!(
            String::from_utf8(dst.to_vec()).unwrap_or_default(),
            prelude("HTTP/1.1 200 OK")
                + "Alt-Svc: h3=\":443\"; ma=86400\r\netag: \"x\"\r\nContent-Length: 0\r\n\r\n"
        );
        // Without one of ours, the caller's is kept.
        let got = head(Version::HTTP_11, 200, &upstream, Framing::Length(0), true);
        assert!(got.contains("alt-svc: h3=\":9\"\r\n"), "{got}");
    }

    #[test]
    fn pre_rendered_lines_come_before_the_map() {
        let mut own = HeaderMap::new();
        own.insert(header::CONTENT_LOCATION, HeaderValue::from_static("/a"));
        let mut dst = BytesMut::new();
        write_response_head(
            &mut dst,
            Version::HTTP_11,
            StatusCode::OK,
            Fields {
                lines: b"etag: \"x\"\r\ncontent-type: text/plain\r\n",
                map: &own,
            },
            Framing::Length(3),
            true,
            &ServerFields {
                date: DATE,
                alt_svc: None,
            },
        );
        assert_eq!(
            String::from_utf8(dst.to_vec()).unwrap_or_default(),
            prelude("HTTP/1.1 200 OK")
                + "etag: \"x\"\r\ncontent-type: text/plain\r\ncontent-location: /a\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn switching_protocols_keeps_upgrade_headers() {
        let mut upgrade = HeaderMap::new();
        upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        let got = head(Version::HTTP_11, 101, &upgrade, Framing::None, true);
        assert_eq!(
            got,
            prelude("HTTP/1.1 101 Switching Protocols")
                + "connection: Upgrade\r\nupgrade: h2c\r\n\r\n"
        );
    }

    #[test]
    fn continue_line() {
        let mut dst = BytesMut::from(&b"x"[..]);
        write_continue(&mut dst);
        assert_eq!(&dst[..], b"xHTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn unknown_length_framing() {
        assert_eq!(Framing::unknown_length(Version::HTTP_11), Framing::Chunked);
        assert_eq!(Framing::unknown_length(Version::HTTP_10), Framing::Close);
    }
}
