//! HTTP/0.9 over QUIC (`hq-interop`, the QUIC interop runner's application protocol).
//!
//! A client opens a bidirectional stream and sends `GET /path\r\n` (some send only `GET /path`
//! followed by the end of the stream); the server answers with the file's bytes and ends the
//! stream. There are no headers, no status and no version: an error is a reset stream.
//!
//! [`parse_request`] takes the bytes received so far and whether the stream ended, and says
//! whether more are needed, or which path was asked for.

/// The longest request line accepted (the interop runner's paths are short random names).
pub const MAX_REQUEST: usize = 8 * 1024;

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum HqRequest<'a> {
    /// No line end yet and the stream is still open: read more.
    Need,
    /// `GET` of this path (still percent-encoded, starting with `/`).
    Get(&'a str),
}

/// Why a request is refused (the stream is reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HqError {
    /// More than [`MAX_REQUEST`] bytes without a line end.
    TooLong,
    /// Not `GET <path>`: another method, no path, a path not starting with `/`, control bytes.
    Malformed,
    /// The stream ended with nothing at all.
    Empty,
}

/// Parse the request line in `buf`; `fin` says the client ended its side of the stream.
pub fn parse_request(buf: &[u8], fin: bool) -> Result<HqRequest<'_>, HqError> {
    let line = match memchr::memchr(b'\n', buf) {
        Some(end) => &buf[..end],
        None if buf.len() > MAX_REQUEST => return Err(HqError::TooLong),
        None if !fin => return Ok(HqRequest::Need),
        None if buf.is_empty() => return Err(HqError::Empty),
        None => buf,
    };
    if line.len() > MAX_REQUEST {
        return Err(HqError::TooLong);
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let path = line.strip_prefix(b"GET ").ok_or(HqError::Malformed)?;
    // An HTTP/1.0-style version after the path is tolerated and ignored.
    let path = match memchr::memchr(b' ', path) {
        Some(space) => &path[..space],
        None => path,
    };
    if !path.starts_with(b"/") || path.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HqError::Malformed);
    }
    std::str::from_utf8(path)
        .map(HqRequest::Get)
        .map_err(|_| HqError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let cases: &[(&[u8], bool, Result<HqRequest<'_>, HqError>)] = &[
            (
                b"GET /index.html\r\n",
                false,
                Ok(HqRequest::Get("/index.html")),
            ),
            (b"GET /a\n", false, Ok(HqRequest::Get("/a"))),
            (b"GET /a", true, Ok(HqRequest::Get("/a"))),
            (b"GET /a HTTP/1.0\r\n", false, Ok(HqRequest::Get("/a"))),
            (b"GET /a%20b\r\n", false, Ok(HqRequest::Get("/a%20b"))),
            (b"GET /a", false, Ok(HqRequest::Need)),
            (b"", false, Ok(HqRequest::Need)),
            (b"", true, Err(HqError::Empty)),
            (b"POST /a\r\n", false, Err(HqError::Malformed)),
            (b"GET a\r\n", false, Err(HqError::Malformed)),
            (b"GET \r\n", false, Err(HqError::Malformed)),
            (b"GET /a\x00b\r\n", false, Err(HqError::Malformed)),
            (b"GET /\xff\r\n", false, Err(HqError::Malformed)),
            (b"get /a\r\n", false, Err(HqError::Malformed)),
        ];
        for (bytes, fin, want) in cases {
            assert_eq!(
                &parse_request(bytes, *fin),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn overlong_lines_are_refused_before_the_line_end() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST + 1, b'a');
        assert_eq!(parse_request(&long, false), Err(HqError::TooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&long, false), Err(HqError::TooLong));
    }
}
