//! What a client sends on its streams (RFC 9114 §4.1, §6), read from buffered bytes: the
//! frames of a request stream, the client's control stream, and the type of a unidirectional
//! stream. Each reader consumes what it can from the front of a buffer and says what it found,
//! or that it needs more; the session feeds it what QUIC delivers and tells it when the stream
//! ended.

use bytes::{Bytes, BytesMut};

use super::frame::{
    self, CANCEL_PUSH, Code, DATA, GOAWAY, H3Error, HEADERS, MAX_PUSH_ID, PRIORITY_UPDATE_PUSH,
    PRIORITY_UPDATE_REQUEST, PUSH_PROMISE, SETTINGS, SETTINGS_MAX_FIELD_SECTION_SIZE, get_varint,
};
use crate::priority::Priority;

fn unexpected(what: &'static str) -> H3Error {
    H3Error::Connection(Code::H3_FRAME_UNEXPECTED, what)
}

/// §7.1: "When a stream terminates cleanly, if the last frame on the stream was truncated,
/// this MUST be treated as a connection error of type H3_FRAME_ERROR."
const TRUNCATED: H3Error = H3Error::Connection(Code::H3_FRAME_ERROR, "stream ends inside a frame");

/// Drop what `buf` holds of a frame being skipped (`left` octets more); true when the frame
/// is behind us.
fn skip(left: &mut u64, buf: &mut BytesMut) -> bool {
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    let _ = buf.split_to(n);
    *left == 0
}

/// The payload of the frame at the front of `buf` (its header `header` octets, its payload
/// `len`, already bounded by the caller), consumed with its header; `None`, with room reserved
/// for the rest, while `buf` holds only part of it.
fn whole_frame(buf: &mut BytesMut, header: usize, len: u64) -> Option<BytesMut> {
    let total = header + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return None;
    }
    let _ = buf.split_to(header);
    Some(buf.split_to(len as usize))
}

/// One part of a request, in the order the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The encoded field section of the request's head (first) or of its trailers (second).
    Headers(Bytes),
    /// The request head's HEADERS frame is longer than the limit: answer 431 without reading
    /// the rest of the stream.
    TooLarge,
    /// Body bytes, from one DATA frame (a frame may come in several parts).
    Data(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body,
    Trailers,
    /// The head was too large: nothing more is read.
    Refused,
}

/// The frames of one request stream (§4.1): HEADERS, then any DATA, then optionally HEADERS
/// with trailers, with frames of unknown types anywhere (§9).
#[derive(Debug)]
pub struct RequestReader {
    phase: Phase,
    /// What is left of the DATA frame being passed on.
    data_left: u64,
    /// What is left of an unknown frame being skipped.
    skip_left: u64,
    /// The longest encoded field section accepted.
    limit: u64,
}

impl RequestReader {
    pub fn new(limit: u64) -> RequestReader {
        RequestReader {
            phase: Phase::Head,
            data_left: 0,
            skip_left: 0,
            limit,
        }
    }

    /// The next part found at the front of `buf`, consumed from it; `Ok(None)` when `buf`
    /// holds no complete part yet.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Part>, H3Error> {
        if self.phase == Phase::Refused {
            buf.clear();
            return Ok(None);
        }
        loop {
            if self.data_left > 0 {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(self.data_left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.data_left -= n as u64;
                return Ok(Some(Part::Data(buf.split_to(n).freeze())));
            }
            if !skip(&mut self.skip_left, buf) {
                return Ok(None);
            }
            let Some((kind, len, header)) = frame::frame_header(buf) else {
                return Ok(None);
            };
            match kind {
                HEADERS => {
                    if self.phase == Phase::Trailers {
                        return Err(unexpected("HEADERS after the trailers"));
                    }
                    if len > self.limit {
                        if self.phase == Phase::Head {
                            self.phase = Phase::Refused;
                            buf.clear();
                            return Ok(Some(Part::TooLarge));
                        }
                        return Err(H3Error::Stream(
                            Code::H3_EXCESSIVE_LOAD,
                            "trailer section too large",
                        ));
                    }
                    let Some(section) = whole_frame(buf, header, len) else {
                        return Ok(None);
                    };
                    self.phase = match self.phase {
                        Phase::Head => Phase::Body,
                        _ => Phase::Trailers,
                    };
                    return Ok(Some(Part::Headers(section.freeze())));
                }
                DATA => {
                    // §4.1: "Receipt of an invalid sequence of frames MUST be treated as a
                    // connection error of type H3_FRAME_UNEXPECTED." DATA before HEADERS or
                    // after the trailers is one.
                    if self.phase != Phase::Body {
                        return Err(unexpected("DATA outside a request's body"));
                    }
                    let _ = buf.split_to(header);
                    self.data_left = len;
                }
                // §7.2.3-§7.2.7: control frames, and push promises, which only a server sends.
                // RFC 9218 §7.2: PRIORITY_UPDATE "MUST be sent on the client control stream".
                CANCEL_PUSH
                | SETTINGS
                | GOAWAY
                | MAX_PUSH_ID
                | PUSH_PROMISE
                | PRIORITY_UPDATE_REQUEST
                | PRIORITY_UPDATE_PUSH => {
                    return Err(unexpected("control frame on a request stream"));
                }
                kind if frame::is_http2_only(kind) => {
                    return Err(unexpected("HTTP/2 frame type on a request stream"));
                }
                // §9: "Implementations MUST discard frames [...] that have unknown or unsupported
                // types."
                _ => {
                    let _ = buf.split_to(header);
                    self.skip_left = len;
                }
            }
        }
    }

    /// The client finished the stream (FIN) and `rest` is what [`next`](Self::next) left.
    pub fn finish(&self, rest: &[u8]) -> Result<(), H3Error> {
        if self.phase == Phase::Refused {
            return Ok(());
        }
        if !rest.is_empty() || self.data_left > 0 || self.skip_left > 0 {
            return Err(TRUNCATED);
        }
        if self.phase == Phase::Head {
            // §4.1.2: "A server MAY [...] H3_REQUEST_INCOMPLETE" for a request that ends
            // before its head.
            return Err(H3Error::Stream(
                Code::H3_REQUEST_INCOMPLETE,
                "request stream ends without a head",
            ));
        }
        Ok(())
    }
}

/// What the client said on its control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Its SETTINGS (§7.2.4); `max_field_section_size` when it limits our response heads.
    Settings { max_field_section_size: Option<u64> },
    /// It is going away: it will not accept pushes from this ID on (§7.2.6).
    Goaway(u64),
    /// RFC 9218 §7.2: request stream `stream` (open, or not opened yet) has a new priority.
    Priority { stream: u64, priority: Priority },
}

/// The longest control frame payload read. SETTINGS and the single-integer frames are short;
/// longer ones are refused rather than buffered.
const MAX_CONTROL_PAYLOAD: u64 = 16 * 1024;

/// The client's control stream (§6.2.1), after its type.
#[derive(Debug, Default)]
pub struct ControlReader {
    settings_seen: bool,
    skip_left: u64,
    max_push_id: Option<u64>,
    goaway: Option<u64>,
}

impl ControlReader {
    /// The next thing the client said, consumed from `buf`; `Ok(None)` when `buf` holds no
    /// complete frame yet.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Control>, H3Error> {
        loop {
            if !skip(&mut self.skip_left, buf) {
                return Ok(None);
            }
            let Some((kind, len, header)) = frame::frame_header(buf) else {
                return Ok(None);
            };
            if !self.settings_seen && kind != SETTINGS {
                // §6.2.1: "If the first frame of the control stream is any other frame type,
                // this MUST be treated as a connection error of type H3_MISSING_SETTINGS."
                return Err(H3Error::Connection(
                    Code::H3_MISSING_SETTINGS,
                    "control stream does not start with SETTINGS",
                ));
            }
            let known = matches!(
                kind,
                SETTINGS
                    | GOAWAY
                    | MAX_PUSH_ID
                    | CANCEL_PUSH
                    | PRIORITY_UPDATE_REQUEST
                    | PRIORITY_UPDATE_PUSH
            );
            if !known {
                if matches!(kind, DATA | HEADERS | PUSH_PROMISE) || frame::is_http2_only(kind) {
                    return Err(unexpected("frame not allowed on the control stream"));
                }
                let _ = buf.split_to(header);
                self.skip_left = len;
                continue;
            }
            if len > MAX_CONTROL_PAYLOAD {
                return Err(H3Error::Connection(
                    Code::H3_EXCESSIVE_LOAD,
                    "control frame too long",
                ));
            }
            let Some(payload) = whole_frame(buf, header, len) else {
                return Ok(None);
            };
            match kind {
                SETTINGS => {
                    if self.settings_seen {
                        // §7.2.4: "If an endpoint receives a second SETTINGS frame on the
                        // control stream, the endpoint MUST respond with a connection error of
                        // type H3_FRAME_UNEXPECTED."
                        return Err(unexpected("second SETTINGS frame"));
                    }
                    self.settings_seen = true;
                    return settings(&payload).map(Some);
                }
                GOAWAY => {
                    // §5.2: an endpoint "MUST NOT increase the value they send in the last
                    // GOAWAY frame".
                    let id = frame::single_varint(&payload)?;
                    if self.goaway.is_some_and(|last| id > last) {
                        return Err(H3Error::Connection(
                            Code::H3_ID_ERROR,
                            "GOAWAY identifier increased",
                        ));
                    }
                    self.goaway = Some(id);
                    return Ok(Some(Control::Goaway(id)));
                }
                MAX_PUSH_ID => {
                    // §7.2.7: "A MAX_PUSH_ID frame cannot reduce the maximum push ID".
                    let id = frame::single_varint(&payload)?;
                    if self.max_push_id.is_some_and(|last| id < last) {
                        return Err(H3Error::Connection(
                            Code::H3_ID_ERROR,
                            "MAX_PUSH_ID reduced",
                        ));
                    }
                    self.max_push_id = Some(id);
                }
                PRIORITY_UPDATE_REQUEST | PRIORITY_UPDATE_PUSH => {
                    let Some((id, len)) = get_varint(&payload) else {
                        return Err(H3Error::Connection(
                            Code::H3_FRAME_ERROR,
                            "PRIORITY_UPDATE without an element ID",
                        ));
                    };
                    if kind == PRIORITY_UPDATE_PUSH {
                        // RFC 9218 §7.2: a push ID beyond the client's MAX_PUSH_ID is an
                        // H3_ID_ERROR. Within it there is nothing to do: we promise no pushes.
                        if self.max_push_id.is_none_or(|max| id > max) {
                            return Err(H3Error::Connection(
                                Code::H3_ID_ERROR,
                                "PRIORITY_UPDATE for a push ID beyond MAX_PUSH_ID",
                            ));
                        }
                        continue;
                    }
                    // "...MUST be treated as a connection error of type H3_ID_ERROR" when the
                    // ID is not that of a client-initiated bidirectional stream.
                    if id % 4 != 0 {
                        return Err(H3Error::Connection(
                            Code::H3_ID_ERROR,
                            "PRIORITY_UPDATE for a stream that is not a request stream",
                        ));
                    }
                    let priority = Priority::parse(&payload[len..]);
                    return Ok(Some(Control::Priority {
                        stream: id,
                        priority,
                    }));
                }
                _ => {
                    // CANCEL_PUSH. §7.2.3: one "for a push ID that has not yet been mentioned by
                    // a PUSH_PROMISE frame [...] MUST be treated as a connection error of type
                    // H3_ID_ERROR"; this server promises nothing.
                    frame::single_varint(&payload)?;
                    return Err(H3Error::Connection(
                        Code::H3_ID_ERROR,
                        "CANCEL_PUSH of a push never promised",
                    ));
                }
            }
        }
    }
}

/// §7.2.4.1: a SETTINGS payload, each identifier at most once, none of HTTP/2's.
fn settings(mut payload: &[u8]) -> Result<Control, H3Error> {
    let frame_error = H3Error::Connection(Code::H3_FRAME_ERROR, "SETTINGS payload is malformed");
    let mut seen: Vec<u64> = Vec::new();
    let mut max_field_section_size = None;
    while !payload.is_empty() {
        let (id, a) = get_varint(payload).ok_or(frame_error)?;
        let (value, b) = get_varint(&payload[a..]).ok_or(frame_error)?;
        payload = &payload[a + b..];
        if frame::is_reserved_setting(id) {
            return Err(H3Error::Connection(
                Code::H3_SETTINGS_ERROR,
                "HTTP/2 setting in SETTINGS",
            ));
        }
        // §7.2.4: "The same setting identifier MUST NOT occur more than once".
        if seen.contains(&id) {
            return Err(H3Error::Connection(
                Code::H3_SETTINGS_ERROR,
                "setting repeated in SETTINGS",
            ));
        }
        seen.push(id);
        if id == SETTINGS_MAX_FIELD_SECTION_SIZE {
            max_field_section_size = Some(value);
        }
    }
    Ok(Control::Settings {
        max_field_section_size,
    })
}

/// What a unidirectional stream opened by the client carries, from its type (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniKind {
    Control,
    /// RFC 9204 §4.2.
    QpackEncoder,
    QpackDecoder,
    /// §6.2.2: "Only servers can push; if a server receives a client-initiated push stream,
    /// this MUST be treated as a connection error of type H3_STREAM_CREATION_ERROR."
    Push,
    /// §6.2: reserved or unknown; the server stops reading it.
    Other(u64),
}

/// The type of a unidirectional stream at the front of `buf`, consumed; `None` when `buf`
/// ends inside it.
pub fn uni_kind(buf: &mut BytesMut) -> Option<UniKind> {
    let (kind, len) = get_varint(buf)?;
    let _ = buf.split_to(len);
    Some(match kind {
        frame::CONTROL_STREAM => UniKind::Control,
        frame::PUSH_STREAM => UniKind::Push,
        frame::ENCODER_STREAM => UniKind::QpackEncoder,
        frame::DECODER_STREAM => UniKind::QpackDecoder,
        other => UniKind::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn frame(kind: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame::put_frame_header(&mut out, kind, payload.len() as u64);
        out.put_slice(payload);
        out.to_vec()
    }

    /// Every part `input` yields when fed one octet at a time, then the outcome at its end.
    fn read_bytewise(input: &[u8], limit: u64) -> (Vec<Part>, Result<(), H3Error>) {
        let mut reader = RequestReader::new(limit);
        let mut buf = BytesMut::new();
        let mut parts = Vec::new();
        for &b in input {
            buf.put_u8(b);
            loop {
                match reader.next(&mut buf) {
                    Ok(Some(part)) => parts.push(part),
                    Ok(None) => break,
                    Err(e) => return (parts, Err(e)),
                }
            }
        }
        (parts, reader.finish(&buf))
    }

    fn read_whole(input: &[u8], limit: u64) -> (Vec<Part>, Result<(), H3Error>) {
        let mut reader = RequestReader::new(limit);
        let mut buf = BytesMut::from(input);
        let mut parts = Vec::new();
        loop {
            match reader.next(&mut buf) {
                Ok(Some(part)) => parts.push(part),
                Ok(None) => return (parts, reader.finish(&buf)),
                Err(e) => return (parts, Err(e)),
            }
        }
    }

    /// Joins DATA parts, so readings of the same bytes in different pieces compare equal.
    fn joined(parts: Vec<Part>) -> Vec<Part> {
        let mut out: Vec<Part> = Vec::new();
        for part in parts {
            match (out.last_mut(), part) {
                (Some(Part::Data(prev)), Part::Data(more)) => {
                    let mut both = BytesMut::from(&prev[..]);
                    both.extend_from_slice(&more);
                    *prev = both.freeze();
                }
                (_, part) => out.push(part),
            }
        }
        out
    }

    #[test]
    fn a_request_is_head_body_and_trailers_in_any_pieces() {
        let mut input = frame(HEADERS, b"head");
        input.extend(frame(0x21, b"grease"));
        input.extend(frame(DATA, b"hello "));
        input.extend(frame(DATA, b""));
        input.extend(frame(DATA, b"world"));
        input.extend(frame(HEADERS, b"trailers"));
        input.extend(frame(0x1f * 7 + 0x21, b""));
        let want = vec![
            Part::Headers(Bytes::from_static(b"head")),
            Part::Data(Bytes::from_static(b"hello world")),
            Part::Headers(Bytes::from_static(b"trailers")),
        ];
        let (parts, end) = read_whole(&input, 64);
        assert_eq!((joined(parts), end), (want.clone(), Ok(())));
        let (parts, end) = read_bytewise(&input, 64);
        assert_eq!((joined(parts), end), (want, Ok(())));
    }

    #[test]
    fn bad_sequences_and_endings_have_the_rfcs_codes() {
        let conn = |code| Err(H3Error::Connection(code, ""));
        let stream = |code| Err(H3Error::Stream(code, ""));
        let code_of = |input: &[u8]| {
            let (_, end) = read_whole(input, 64);
            end.map_err(|e| match e {
                H3Error::Connection(c, _) => H3Error::Connection(c, ""),
                H3Error::Stream(c, _) => H3Error::Stream(c, ""),
            })
        };
        let head = frame(HEADERS, b"h");
        let cases: Vec<(Vec<u8>, Result<(), H3Error>)> = vec![
            (frame(DATA, b"x"), conn(Code::H3_FRAME_UNEXPECTED)),
            (
                [head.clone(), frame(HEADERS, b"t"), frame(DATA, b"x")].concat(),
                conn(Code::H3_FRAME_UNEXPECTED),
            ),
            (
                [head.clone(), frame(HEADERS, b"t"), frame(HEADERS, b"u")].concat(),
                conn(Code::H3_FRAME_UNEXPECTED),
            ),
            (
                [head.clone(), frame(SETTINGS, b"")].concat(),
                conn(Code::H3_FRAME_UNEXPECTED),
            ),
            (frame(GOAWAY, b"\x00"), conn(Code::H3_FRAME_UNEXPECTED)),
            (
                frame(PRIORITY_UPDATE_REQUEST, b"\x00u=1"),
                conn(Code::H3_FRAME_UNEXPECTED),
            ),
            (
                frame(PUSH_PROMISE, b"\x00"),
                conn(Code::H3_FRAME_UNEXPECTED),
            ),
            (
                [head.clone(), frame(0x8, b"")].concat(),
                conn(Code::H3_FRAME_UNEXPECTED),
            ),
            (
                [head.clone(), frame(DATA, b"abc")[..3].to_vec()].concat(),
                conn(Code::H3_FRAME_ERROR),
            ),
            (
                frame(HEADERS, b"h")[..2].to_vec(),
                conn(Code::H3_FRAME_ERROR),
            ),
            (
                frame(0x21, b"only grease"),
                stream(Code::H3_REQUEST_INCOMPLETE),
            ),
            (Vec::new(), stream(Code::H3_REQUEST_INCOMPLETE)),
            (
                [head.clone(), frame(HEADERS, &[0; 65])].concat(),
                stream(Code::H3_EXCESSIVE_LOAD),
            ),
            ([head, frame(DATA, b"")].concat(), Ok(())),
        ];
        for (input, want) in cases {
            assert_eq!(code_of(&input), want, "{input:02x?}");
        }
        // A head over the limit is reported at once, before its payload arrives.
        let (parts, _) = read_whole(&frame(HEADERS, &[0; 65])[..3], 64);
        assert_eq!(parts, vec![Part::TooLarge]);
    }

    fn control(input: &[u8]) -> Result<Vec<Control>, Code> {
        let mut reader = ControlReader::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.put_u8(b);
            while let Some(c) = reader.next(&mut buf).map_err(H3Error::code)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    #[test]
    fn the_control_stream_starts_with_settings_and_keeps_to_its_frames() {
        let mut settings = BytesMut::new();
        frame::put_settings(&mut settings, &[(0x6, 1000), (0x1, 0), (0x7, 0), (0x2a, 9)]);
        let settings = settings.to_vec();
        let mut ok = settings.clone();
        ok.extend(frame(0x21, b"grease"));
        ok.extend(frame(MAX_PUSH_ID, &[0x04]));
        ok.extend(frame(MAX_PUSH_ID, &[0x08]));
        ok.extend(frame(GOAWAY, &[0x08]));
        ok.extend(frame(GOAWAY, &[0x04]));
        ok.extend(frame(PRIORITY_UPDATE_REQUEST, b"\x08u=1, i"));
        ok.extend(frame(PRIORITY_UPDATE_REQUEST, b"\x40\x40"));
        // A push within MAX_PUSH_ID: we promise none, so nothing to report.
        ok.extend(frame(PRIORITY_UPDATE_PUSH, b"\x02u=0"));
        assert_eq!(
            control(&ok),
            Ok(vec![
                Control::Settings {
                    max_field_section_size: Some(1000)
                },
                Control::Goaway(8),
                Control::Goaway(4),
                Control::Priority {
                    stream: 8,
                    priority: Priority {
                        urgency: 1,
                        incremental: true
                    }
                },
                Control::Priority {
                    stream: 64,
                    priority: Priority::default()
                },
            ])
        );
        let after = |more: Vec<u8>| [settings.clone(), more].concat();
        let cases: Vec<(Vec<u8>, Code)> = vec![
            (frame(MAX_PUSH_ID, &[0]), Code::H3_MISSING_SETTINGS),
            (frame(0x21, b""), Code::H3_MISSING_SETTINGS),
            (after(settings.clone()), Code::H3_FRAME_UNEXPECTED),
            (after(frame(DATA, b"")), Code::H3_FRAME_UNEXPECTED),
            (after(frame(HEADERS, b"")), Code::H3_FRAME_UNEXPECTED),
            (after(frame(0x6, b"")), Code::H3_FRAME_UNEXPECTED),
            (after(frame(CANCEL_PUSH, &[0])), Code::H3_ID_ERROR),
            (
                after([frame(GOAWAY, &[4]), frame(GOAWAY, &[8])].concat()),
                Code::H3_ID_ERROR,
            ),
            (
                after([frame(MAX_PUSH_ID, &[8]), frame(MAX_PUSH_ID, &[4])].concat()),
                Code::H3_ID_ERROR,
            ),
            (after(frame(GOAWAY, &[0x40])), Code::H3_FRAME_ERROR),
            (
                after(frame(PRIORITY_UPDATE_REQUEST, b"")),
                Code::H3_FRAME_ERROR,
            ),
            (
                after(frame(PRIORITY_UPDATE_REQUEST, b"\x02u=1")),
                Code::H3_ID_ERROR,
            ),
            (
                after(frame(PRIORITY_UPDATE_REQUEST, b"\x01u=1")),
                Code::H3_ID_ERROR,
            ),
            (
                after(frame(PRIORITY_UPDATE_PUSH, b"\x00u=1")),
                Code::H3_ID_ERROR,
            ),
            (
                after(
                    [
                        frame(MAX_PUSH_ID, &[2]),
                        frame(PRIORITY_UPDATE_PUSH, b"\x03"),
                    ]
                    .concat(),
                ),
                Code::H3_ID_ERROR,
            ),
            (after(frame(GOAWAY, &[4, 4])), Code::H3_FRAME_ERROR),
            (
                frame(SETTINGS, &[0x06, 0x01, 0x06, 0x02]),
                Code::H3_SETTINGS_ERROR,
            ),
            (frame(SETTINGS, &[0x04, 0x01]), Code::H3_SETTINGS_ERROR),
            (frame(SETTINGS, &[0x06]), Code::H3_FRAME_ERROR),
            (frame(SETTINGS, &[0u8; 20_000]), Code::H3_EXCESSIVE_LOAD),
        ];
        for (input, want) in cases {
            assert_eq!(control(&input), Err(want), "{input:02x?}");
        }
    }

    #[test]
    fn unidirectional_stream_types() {
        let mut buf = BytesMut::from(&[0x40][..]);
        assert_eq!(uni_kind(&mut buf), None);
        buf.put_u8(0x21);
        assert_eq!(uni_kind(&mut buf), Some(UniKind::Other(0x21)));
        assert!(buf.is_empty());
        for (byte, kind) in [
            (0x00, UniKind::Control),
            (0x01, UniKind::Push),
            (0x02, UniKind::QpackEncoder),
            (0x03, UniKind::QpackDecoder),
        ] {
            let mut buf = BytesMut::from(&[byte, 0xaa][..]);
            assert_eq!(uni_kind(&mut buf), Some(kind));
            assert_eq!(&buf[..], &[0xaa]);
        }
    }
}
