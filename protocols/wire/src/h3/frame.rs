//! HTTP/3 frame layout (RFC 9114 §7): QUIC variable-length integers, frame headers, error
//! codes, settings, and writers for the frames a server sends.

use bytes::{BufMut, BytesMut};

pub const DATA: u64 = 0x0;
pub const HEADERS: u64 = 0x1;
pub const CANCEL_PUSH: u64 = 0x3;
pub const SETTINGS: u64 = 0x4;
pub const PUSH_PROMISE: u64 = 0x5;
pub const GOAWAY: u64 = 0x7;
pub const MAX_PUSH_ID: u64 = 0xd;
/// RFC 9218 §7.2: a new priority for a request stream, or for a push.
pub const PRIORITY_UPDATE_REQUEST: u64 = 0xf0700;
pub const PRIORITY_UPDATE_PUSH: u64 = 0xf0701;

/// §7.2.8: frame types of HTTP/2 with no HTTP/3 meaning (PRIORITY, PING, WINDOW_UPDATE,
/// CONTINUATION); "Receipt of these frames MUST be treated as a connection error of type
/// H3_FRAME_UNEXPECTED."
pub fn is_http2_only(kind: u64) -> bool {
    matches!(kind, 0x2 | 0x6 | 0x8 | 0x9)
}

/// §6.2: unidirectional stream types.
pub const CONTROL_STREAM: u64 = 0x0;
pub const PUSH_STREAM: u64 = 0x1;
/// RFC 9204 §4.2: the QPACK encoder and decoder streams.
pub const ENCODER_STREAM: u64 = 0x2;
pub const DECODER_STREAM: u64 = 0x3;

pub const SETTINGS_QPACK_MAX_TABLE_CAPACITY: u64 = 0x1;
pub const SETTINGS_MAX_FIELD_SECTION_SIZE: u64 = 0x6;
pub const SETTINGS_QPACK_BLOCKED_STREAMS: u64 = 0x7;

/// §7.2.4.1: setting identifiers of HTTP/2 (and 0x00), reserved in HTTP/3: "their receipt MUST
/// be treated as a connection error of type H3_SETTINGS_ERROR."
pub fn is_reserved_setting(id: u64) -> bool {
    matches!(id, 0x0 | 0x2 | 0x3 | 0x4 | 0x5)
}

/// An application error code (§8.1; RFC 9204 §6 for QPACK's).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Code(pub u64);

impl Code {
    pub const H3_NO_ERROR: Code = Code(0x100);
    pub const H3_GENERAL_PROTOCOL_ERROR: Code = Code(0x101);
    pub const H3_INTERNAL_ERROR: Code = Code(0x102);
    pub const H3_STREAM_CREATION_ERROR: Code = Code(0x103);
    pub const H3_CLOSED_CRITICAL_STREAM: Code = Code(0x104);
    pub const H3_FRAME_UNEXPECTED: Code = Code(0x105);
    pub const H3_FRAME_ERROR: Code = Code(0x106);
    pub const H3_EXCESSIVE_LOAD: Code = Code(0x107);
    pub const H3_ID_ERROR: Code = Code(0x108);
    pub const H3_SETTINGS_ERROR: Code = Code(0x109);
    pub const H3_MISSING_SETTINGS: Code = Code(0x10a);
    pub const H3_REQUEST_REJECTED: Code = Code(0x10b);
    pub const H3_REQUEST_CANCELLED: Code = Code(0x10c);
    pub const H3_REQUEST_INCOMPLETE: Code = Code(0x10d);
    pub const H3_MESSAGE_ERROR: Code = Code(0x10e);
    pub const QPACK_DECOMPRESSION_FAILED: Code = Code(0x200);
    pub const QPACK_ENCODER_STREAM_ERROR: Code = Code(0x201);
    pub const QPACK_DECODER_STREAM_ERROR: Code = Code(0x202);
}

/// What went wrong on a stream, and how far it reaches (§8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum H3Error {
    /// The connection ends with this code (CONNECTION_CLOSE).
    Connection(Code, &'static str),
    /// Only this stream is refused: STOP_SENDING and RESET_STREAM with this code.
    Stream(Code, &'static str),
}

impl H3Error {
    pub fn code(self) -> Code {
        match self {
            H3Error::Connection(code, _) | H3Error::Stream(code, _) => code,
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            H3Error::Connection(_, what) | H3Error::Stream(_, what) => what,
        }
    }
}

/// The largest value a variable-length integer holds (RFC 9000 §16).
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// RFC 9000 §16: a variable-length integer at the start of `buf` and its length, or `None`
/// when `buf` ends inside it.
pub fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

/// How many octets `value` takes as a variable-length integer.
pub fn varint_len(value: u64) -> usize {
    match value {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Write `value` (at most [`MAX_VARINT`]) as a variable-length integer, in its shortest form.
pub fn put_varint(out: &mut BytesMut, value: u64) {
    debug_assert!(value <= MAX_VARINT);
    match varint_len(value) {
        1 => out.put_u8(value as u8),
        2 => out.put_u16(0x4000 | value as u16),
        4 => out.put_u32(0x8000_0000 | value as u32),
        _ => out.put_u64(0xc000_0000_0000_0000 | value),
    }
}

/// §7.1: a frame header (type, payload length) at the start of `buf`, and its length; `None`
/// when `buf` ends inside it.
pub fn frame_header(buf: &[u8]) -> Option<(u64, u64, usize)> {
    let (kind, a) = get_varint(buf)?;
    let (len, b) = get_varint(&buf[a..])?;
    Some((kind, len, a + b))
}

pub fn put_frame_header(out: &mut BytesMut, kind: u64, len: u64) {
    put_varint(out, kind);
    put_varint(out, len);
}

/// A SETTINGS frame (§7.2.4) with these identifier–value pairs.
pub fn put_settings(out: &mut BytesMut, settings: &[(u64, u64)]) {
    let len: usize = settings
        .iter()
        .map(|&(id, value)| varint_len(id) + varint_len(value))
        .sum();
    put_frame_header(out, SETTINGS, len as u64);
    for &(id, value) in settings {
        put_varint(out, id);
        put_varint(out, value);
    }
}

/// A GOAWAY frame (§7.2.6): requests on client streams from `id` on will not be processed.
pub fn put_goaway(out: &mut BytesMut, id: u64) {
    put_frame_header(out, GOAWAY, varint_len(id) as u64);
    put_varint(out, id);
}

/// A payload that must be exactly one variable-length integer (GOAWAY, MAX_PUSH_ID,
/// CANCEL_PUSH). §7.1: otherwise "a connection error of type H3_FRAME_ERROR".
pub fn single_varint(payload: &[u8]) -> Result<u64, H3Error> {
    match get_varint(payload) {
        Some((value, len)) if len == payload.len() => Ok(value),
        _ => Err(H3Error::Connection(
            Code::H3_FRAME_ERROR,
            "frame payload is not one integer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for value in [
            0,
            37,
            63,
            64,
            15_293,
            16_383,
            16_384,
            494_878_333,
            1 << 30,
            MAX_VARINT,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(get_varint(&out), Some((value, out.len())));
            // Any shorter prefix asks for more.
            for cut in 0..out.len() {
                assert_eq!(get_varint(&out[..cut]), None);
            }
        }
        // RFC 9000 §A.1's examples, including a non-minimal encoding of 37.
        assert_eq!(
            get_varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(
            get_varint(&[0x9d, 0x7f, 0x3e, 0x7d]),
            Some((494_878_333, 4))
        );
        assert_eq!(get_varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(get_varint(&[0x40, 0x25]), Some((37, 2)));
    }

    #[test]
    fn settings_and_goaway_are_laid_out_as_specified() {
        let mut out = BytesMut::new();
        put_settings(&mut out, &[(SETTINGS_MAX_FIELD_SECTION_SIZE, 16_384)]);
        assert_eq!(&out[..], &[0x04, 0x05, 0x06, 0x80, 0x00, 0x40, 0x00]);
        out.clear();
        put_goaway(&mut out, 8);
        assert_eq!(&out[..], &[0x07, 0x01, 0x08]);
        assert_eq!(frame_header(&out), Some((GOAWAY, 1, 2)));
        assert_eq!(single_varint(&out[2..]), Ok(8));
        assert!(single_varint(&[0x08, 0x00]).is_err());
        assert!(single_varint(&[0x40]).is_err());
    }
}
