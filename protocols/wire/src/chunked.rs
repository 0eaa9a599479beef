//! Sans-IO decoder for chunked bodies (RFC 9112 §7.1), and the two encoding helpers
//! ([`write_chunk_size`], [`write_last_chunk`]) every chunked sender shares.
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! The session owns the read buffer and calls [`ChunkedDecoder::decode`]
//! after every read; the decoder takes framing bytes out of the buffer and
//! hands chunk data back without copying (`BytesMut::split_to`). It stops
//! exactly after the final CRLF, so whatever follows (a pipelined request)
//! stays in the buffer.
//!
//! What it refuses: line ends other than CRLF (a bare LF in body framing is
//! where request smuggling lives, so RFC 9112 §2.2's leniency is not
//! extended here), sizes with more hex digits than a u64 holds, extensions
//! and trailers beyond fixed bounds, and bodies beyond `max_body`, which is
//! checked against each chunk's declared size before its data arrives.
//! Extensions are checked for stray control bytes and ignored ("A recipient
//! MUST ignore unrecognized chunk extensions", §7.1.1); trailer fields are
//! discarded (§7.1.2 lets a recipient do that).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;

use crate::response::put_field;

/// At most this many hex digits in a chunk size: a u64 holds 16.
const MAX_SIZE_DIGITS: u8 = 16;
/// Longest extension part of one chunk-size line, in bytes.
const MAX_EXTENSION_LINE: usize = 1024;
/// Most extension bytes over a whole body, so that many tiny chunks cannot
/// carry unbounded extension data.
const MAX_EXTENSION_TOTAL: usize = 16 * 1024;
/// Largest trailer section, in bytes.
const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// What one call to [`ChunkedDecoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, in order. Never empty.
    Data(Bytes),
    /// The buffer is used up; read more and call again.
    NeedMore,
    /// The body, trailers and the final CRLF are consumed.
    Done,
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// 400: the chunked framing is broken; the text says where.
    Malformed(&'static str),
    /// 413: the body is larger than the decoder's `max_body`.
    TooLarge,
}

impl ChunkedError {
    /// The status to answer with (400 or 413); the connection must close,
    /// since the rest of the body cannot be framed or skipped.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ChunkedError::Malformed(_) => http::StatusCode::BAD_REQUEST,
            ChunkedError::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkedError::Malformed(why) => write!(f, "malformed chunked body: {why}"),
            ChunkedError::TooLarge => f.write_str("chunked body too large"),
        }
    }
}

impl std::error::Error for ChunkedError {}

/// Where the decoder is in the chunked grammar; each state is named for
/// what it expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a chunk size.
    SizeStart,
    /// More hex digits, or what ends them (BWS, `;`, CR).
    Size { size: u64, digits: u8 },
    /// Whitespace after the size: only `;` may follow (BWS before chunk-ext).
    SizeSpace { size: u64 },
    /// The rest of a chunk extension, up to CR.
    Extension { size: u64, len: usize },
    /// The LF that ends a chunk-size line.
    SizeLf { size: u64 },
    /// This many bytes of chunk data.
    Data { remaining: u64 },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer field line, or the CR of the final CRLF.
    TrailerStart,
    /// The rest of a trailer field line, up to CR.
    TrailerLine,
    /// The LF ending a trailer field line.
    TrailerLf,
    /// The LF of the final CRLF.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Decodes one chunked request body. Create one per body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The largest body accepted (sum of chunk sizes).
    max_body: u64,
    /// Sum of the sizes of the chunks announced so far.
    announced: u64,
    /// Extension bytes seen so far, over all chunks.
    extension_total: usize,
    /// Trailer bytes seen so far.
    trailer_total: usize,
    /// The trailer section's field lines, when the caller forwards them.
    trailers: Option<Vec<u8>>,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body` bytes of data.
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            max_body,
            announced: 0,
            extension_total: 0,
            trailer_total: 0,
            trailers: None,
        }
    }

    /// A decoder that keeps the trailer section for [`ChunkedDecoder::take_trailers`] (a
    /// proxy forwards a member's trailers) instead of discarding it.
    pub fn keeping_trailers(max_body: u64) -> Self {
        ChunkedDecoder {
            trailers: Some(Vec::new()),
            ..ChunkedDecoder::new(max_body)
        }
    }

    /// The trailer field lines (each ending in CRLF, without the final CRLF) once the body is
    /// done, when the decoder keeps them and there were any.
    pub fn take_trailers(&mut self) -> Option<Vec<u8>> {
        match &self.trailers {
            Some(t) if self.is_done() && !t.is_empty() => self.trailers.take(),
            _ => None,
        }
    }

    /// Whether the whole body has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes framing bytes from the front of `src` and returns the next
    /// piece of body data, [`Decoded::NeedMore`] once `src` is used up, or
    /// [`Decoded::Done`] (then and afterwards, without touching `src`).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Data { remaining } => {
                    if src.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(remaining).map_or(src.len(), |r| r.min(src.len()));
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Decoded::Data(src.split_to(take).freeze()));
                }
                _ => {
                    // Framing bytes: step through them until data starts,
                    // the body ends, or the buffer runs out.
                    let mut used = 0;
                    for &byte in src.iter() {
                        used += 1;
                        self.step(byte)?;
                        if matches!(self.state, State::Data { .. } | State::Done) {
                            break;
                        }
                    }
                    src.advance(used);
                    if !matches!(self.state, State::Data { .. } | State::Done) {
                        return Ok(Decoded::NeedMore);
                    }
                }
            }
        }
    }

    /// Advances the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedError::Malformed;
        self.state = match self.state {
            State::SizeStart => match hex_value(b) {
                Some(v) => State::Size {
                    size: u64::from(v),
                    digits: 1,
                },
                None => return Err(Malformed("chunk size is not hex")),
            },
            State::Size { size, digits } => match b {
                b';' => State::Extension { size, len: 0 },
                b' ' | b'\t' => State::SizeSpace { size },
                b'\r' => State::SizeLf { size },
                _ => {
                    let v = hex_value(b).ok_or(Malformed("invalid byte in chunk size"))?;
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(Malformed("chunk size has too many digits"));
                    }
                    // 16 digits cannot overflow a u64, but say so in code.
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(v)));
                    State::Size {
                        size: size.ok_or(Malformed("chunk size overflows"))?,
                        digits: digits + 1,
                    }
                }
            },
            // chunk-ext = *( BWS ";" ... ): whitespace after the size must
            // lead to an extension.
            State::SizeSpace { size } => match b {
                b' ' | b'\t' => State::SizeSpace { size },
                b';' => State::Extension { size, len: 0 },
                _ => return Err(Malformed("whitespace after chunk size")),
            },
            State::Extension { size, len } => match b {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(Malformed("bare LF in chunk extension")),
                b if is_field_byte(b) => {
                    self.extension_total += 1;
                    if len >= MAX_EXTENSION_LINE || self.extension_total > MAX_EXTENSION_TOTAL {
                        return Err(Malformed("chunk extension too long"));
                    }
                    State::Extension { size, len: len + 1 }
                }
                _ => return Err(Malformed("control byte in chunk extension")),
            },
            State::SizeLf { size } => match b {
                b'\n' if size == 0 => State::TrailerStart,
                b'\n' => {
                    self.announced = self
                        .announced
                        .checked_add(size)
                        .ok_or(ChunkedError::TooLarge)?;
                    if self.announced > self.max_body {
                        return Err(ChunkedError::TooLarge);
                    }
                    State::Data { remaining: size }
                }
                _ => return Err(Malformed("chunk-size line not ended by CRLF")),
            },
            // The data states are handled in `decode`; a byte here is a bug
            // of ours, reported rather than panicking.
            State::Data { .. } => return Err(Malformed("internal: data byte in framing state")),
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(Malformed("chunk data not followed by CRLF")),
            },
            State::DataLf => match b {
                b'\n' => State::SizeStart,
                _ => return Err(Malformed("chunk data not followed by CRLF")),
            },
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                // RFC 9112 §5.2: obs-fold is not allowed in trailers either.
                b' ' | b'\t' => return Err(Malformed("folded trailer line")),
                b if is_field_byte(b) => self.trailer_byte(b, State::TrailerLine)?,
                _ => return Err(Malformed("invalid byte in trailer section")),
            },
            State::TrailerLine => match b {
                b'\r' => self.trailer_byte(b, State::TrailerLf)?,
                b if is_field_byte(b) => self.trailer_byte(b, State::TrailerLine)?,
                _ => return Err(Malformed("invalid byte in trailer section")),
            },
            State::TrailerLf => match b {
                b'\n' => self.trailer_byte(b, State::TrailerStart)?,
                _ => return Err(Malformed("trailer line not ended by CRLF")),
            },
            State::FinalLf => match b {
                b'\n' => State::Done,
                _ => return Err(Malformed("chunked body not ended by CRLF")),
            },
            State::Done => State::Done,
        };
        Ok(())
    }

    /// Counts one trailer byte against [`MAX_TRAILER_BYTES`].
    fn trailer_byte(&mut self, b: u8, next: State) -> Result<State, ChunkedError> {
        self.trailer_total += 1;
        if self.trailer_total > MAX_TRAILER_BYTES {
            return Err(ChunkedError::Malformed("trailer section too large"));
        }
        if let Some(kept) = &mut self.trailers {
            kept.push(b);
        }
        Ok(next)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes allowed inside a field line or extension: HTAB, SP, VCHAR,
/// obs-text (RFC 9110 §5.5), i.e. no CR, LF, NUL or other controls.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Appends one chunk's size line (`{hex}\r\n`); the data and its CRLF follow.
pub fn write_chunk_size(dst: &mut BytesMut, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[at..]);
    dst.put_slice(b"\r\n");
}

/// Appends the last chunk, the trailer fields and the final CRLF.
pub fn write_last_chunk(dst: &mut BytesMut, trailers: Option<&HeaderMap>) {
    dst.put_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    dst.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split into pieces of `step` bytes; returns the body or
    /// the first error, and what was left in the buffer after Done.
    fn run(input: &[u8], step: usize, max_body: u64) -> Result<(Vec<u8>, Vec<u8>), ChunkedError> {
        let mut decoder = ChunkedDecoder::new(max_body);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut pieces = input.chunks(step.max(1));
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => {
                    assert!(!data.is_empty());
                    body.extend_from_slice(&data);
                }
                Decoded::NeedMore => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return Err(ChunkedError::Malformed("test: input ended early")),
                },
                Decoded::Done => {
                    assert!(decoder.is_done());
                    // Done is sticky and leaves the rest alone.
                    assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
                    let mut rest = buf.to_vec();
                    for piece in pieces {
                        rest.extend_from_slice(piece);
                    }
                    return Ok((body, rest));
                }
            }
        }
    }

    /// Runs `input` whole and byte at a time, checking both agree.
    fn decode_all(input: &[u8], max_body: u64) -> Result<(Vec<u8>, Vec<u8>), ChunkedError> {
        let whole = run(input, input.len(), max_body);
        for step in [1, 2, 3, 7] {
            assert_eq!(
                run(input, step, max_body),
                whole,
                "step {step} on {input:?}"
            );
        }
        whole
    }

    #[test]
    fn valid_bodies() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"0\r\n\r\n", b"", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", b""),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                b"hello world",
                b"",
            ),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b""),
            (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789", b""),
            (b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc", b""),
            // Extensions, with and without values, with BWS.
            (b"3;name\r\nabc\r\n0\r\n\r\n", b"abc", b""),
            (
                b"3;name=value;other=\"quoted \\\" str\"\r\nabc\r\n0;last\r\n\r\n",
                b"abc",
                b"",
            ),
            (b"3 ;name\r\nabc\r\n0\t; x = y\r\n\r\n", b"abc", b""),
            // Trailers are consumed and discarded.
            (
                b"3\r\nabc\r\n0\r\nChecksum: 1234\r\nX-Other: a b\r\n\r\n",
                b"abc",
                b"",
            ),
            // Whatever follows the body stays for the next request.
            (
                b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
                b"abc",
                b"GET / HTTP/1.1\r\n",
            ),
        ];
        for &(input, body, rest) in cases {
            let (got_body, got_rest) =
                decode_all(input, 1 << 20).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got_body, body, "{input:?}");
            assert_eq!(got_rest, rest, "{input:?}");
        }
    }

    #[test]
    fn malformed_bodies() {
        let cases: &[&[u8]] = &[
            b"\r\n",
            b"g\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\rhello",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r",
            b"5;a\nhello",
            b"5;a\x00b\r\nhello",
            b"5;a\rb\r\nhello",
            b"0\r\n\n",
            b"0\r\nTrailer: x\n\r\n",
            b"0\r\nTrailer: x\r\n folded\r\n\r\n",
            b"0\r\nBad\x01: x\r\n\r\n",
            b"0\r\n\rX",
            // 17 hex digits, even when they would fit.
            b"00000000000000001\r\na\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"FFFFFFFFFFFFFFFFF\r\n",
        ];
        for &input in cases {
            let got = decode_all(input, u64::MAX);
            assert!(
                matches!(got, Err(ChunkedError::Malformed(_))),
                "{input:?}: {got:?}"
            );
        }
    }

    #[test]
    fn size_limits() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert!(decode_all(body, 11).is_ok());
        assert_eq!(decode_all(body, 10), Err(ChunkedError::TooLarge));
        assert_eq!(decode_all(body, 4), Err(ChunkedError::TooLarge));
        // The declared size is refused before its data arrives.
        let mut decoder = ChunkedDecoder::new(100);
        let mut buf = BytesMut::from(&b"FFFFFFFFFFFFFFFF\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Err(ChunkedError::TooLarge));
        // The largest size a u64 holds is fine when max_body allows it.
        let mut decoder = ChunkedDecoder::new(u64::MAX);
        let mut buf = BytesMut::from(&b"FFFFFFFFFFFFFFFF\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        assert_eq!(
            ChunkedError::TooLarge.status(),
            http::StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ChunkedError::Malformed("x").status(),
            http::StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn extension_and_trailer_bounds() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_LINE + 1));
        long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(matches!(
            decode_all(&long_ext, 10),
            Err(ChunkedError::Malformed(_))
        ));

        // Many chunks with modest extensions add up.
        let mut many = Vec::new();
        for _ in 0..(MAX_EXTENSION_TOTAL / 100 + 1) {
            many.extend_from_slice(b"1;");
            many.extend(std::iter::repeat_n(b'e', 100));
            many.extend_from_slice(b"\r\nx\r\n");
        }
        many.extend_from_slice(b"0\r\n\r\n");
        assert!(matches!(
            run(&many, many.len(), u64::MAX),
            Err(ChunkedError::Malformed(_))
        ));

        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILER_BYTES / 10 + 1) {
            trailers.extend_from_slice(b"X-T: abc\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(matches!(
            run(&trailers, trailers.len(), 10),
            Err(ChunkedError::Malformed(_))
        ));
    }

    #[test]
    fn data_is_handed_out_without_waiting_for_the_whole_chunk() {
        let mut decoder = ChunkedDecoder::new(1000);
        let mut buf = BytesMut::from(&b"a\r\n01234"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"01234")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"56789\r\n0\r\n\r\n");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"56789")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
        assert!(buf.is_empty());
    }

    #[test]
    fn trailers_are_kept_when_asked() {
        let input = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\nNEXT";
        let mut decoder = ChunkedDecoder::keeping_trailers(100);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(decoder.take_trailers(), None);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(&buf[..], b"NEXT");
        assert_eq!(
            decoder.take_trailers().as_deref(),
            Some(&b"grpc-status: 0\r\nx: y\r\n"[..])
        );
        let mut plain = ChunkedDecoder::keeping_trailers(100);
        let mut buf = BytesMut::from(&b"0\r\n\r\n"[..]);
        assert_eq!(plain.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(plain.take_trailers(), None);
        let mut discarding = ChunkedDecoder::new(100);
        let mut buf = BytesMut::from(&input[..]);
        while discarding.decode(&mut buf) != Ok(Decoded::Done) {}
        assert_eq!(discarding.take_trailers(), None);
    }

    #[test]
    fn chunk_framing() {
        let mut out = BytesMut::new();
        write_chunk_size(&mut out, 0x1a2b);
        write_chunk_size(&mut out, 1);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        write_last_chunk(&mut out, Some(&trailers));
        assert_eq!(&out[..], b"1a2b\r\n1\r\n0\r\ngrpc-status: 0\r\n\r\n");
    }
}
