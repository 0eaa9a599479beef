//! HTTP/2 frame layout (RFC 9113 §4, §6): types, flags, error codes, and writers for the frames
//! a server sends.

use bytes::{BufMut, BytesMut};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Every frame starts with a 9-octet header (§4.1).
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value, and the least any endpoint accepts (§6.5.2).
pub const MIN_MAX_FRAME: usize = 16_384;
/// §6.9.1: "A sender MUST NOT allow a flow-control window to exceed 2^31-1 octets."
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The initial flow-control window of streams and the connection (§6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;
/// RFC 9218 §7.1.
pub const PRIORITY_UPDATE: u8 = 0x10;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
/// RFC 9218 §2.1: 1 says the sender ignores RFC 7540's priority signals.
pub const SETTINGS_NO_RFC7540_PRIORITIES: u16 = 0x9;

/// An error code (§7).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

impl std::fmt::Debug for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Reason({:#x})", self.0),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A frame header as read (§4.1). The reserved bit of the stream identifier is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        Header {
            len: usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }
}

/// Write a frame header.
pub fn put_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.reserve(HEADER_LEN + len);
    out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.put_u32(stream);
}

pub fn put_settings(out: &mut BytesMut, values: &[(u16, u32)]) {
    put_header(out, values.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in values {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub fn put_settings_ack(out: &mut BytesMut) {
    put_header(out, 0, SETTINGS, ACK, 0);
}

pub fn put_ping(out: &mut BytesMut, payload: [u8; 8], ack: bool) {
    put_header(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.put_slice(&payload);
}

pub fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_header(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment);
}

pub fn put_rst_stream(out: &mut BytesMut, stream: u32, reason: Reason) {
    put_header(out, 4, RST_STREAM, 0, stream);
    out.put_u32(reason.0);
}

pub fn put_goaway(out: &mut BytesMut, last_stream: u32, reason: Reason) {
    put_header(out, 8, GOAWAY, 0, 0);
    out.put_u32(last_stream);
    out.put_u32(reason.0);
}

/// A header block as HEADERS and, past `max_frame` octets, CONTINUATION frames (§6.10).
pub fn put_header_block(
    out: &mut BytesMut,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let mut chunks = block.chunks(max_frame.max(1));
    let first = chunks.next().unwrap_or(&[]);
    let mut kind = HEADERS;
    let mut flags = if end_stream { END_STREAM } else { 0 };
    let mut chunk = first;
    loop {
        let next = chunks.next();
        if next.is_none() {
            flags |= END_HEADERS;
        }
        put_header(out, chunk.len(), kind, flags, stream);
        out.put_slice(chunk);
        match next {
            Some(more) => {
                chunk = more;
                kind = CONTINUATION;
                flags = 0;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_drop_the_reserved_bit() {
        let mut out = BytesMut::new();
        put_header(&mut out, 0x012345, PING, 0xfe, 7);
        out[5] |= 0x80;
        let bytes: [u8; HEADER_LEN] = out[..].try_into().unwrap();
        let header = Header::parse(&bytes);
        assert_eq!(
            header,
            Header {
                len: 0x012345,
                kind: PING,
                flags: 0xfe,
                stream: 7
            }
        );
    }

    #[test]
    fn a_long_block_is_continued() {
        let mut out = BytesMut::new();
        put_header_block(&mut out, 1, &[7u8; 40], true, 16);
        // HEADERS(16, END_STREAM), CONTINUATION(16), CONTINUATION(8, END_HEADERS).
        assert_eq!(out.len(), 3 * HEADER_LEN + 40);
        assert_eq!((out[3], out[4]), (HEADERS, END_STREAM));
        assert_eq!((out[25 + 3], out[25 + 4]), (CONTINUATION, 0));
        assert_eq!((out[50 + 3], out[50 + 4]), (CONTINUATION, END_HEADERS));
        let mut empty = BytesMut::new();
        put_header_block(&mut empty, 1, &[], false, 16);
        assert_eq!(&empty[..5], &[0, 0, 0, HEADERS, END_HEADERS]);
    }

    #[test]
    fn reasons_print_their_names() {
        assert_eq!(Reason::ENHANCE_YOUR_CALM.to_string(), "ENHANCE_YOUR_CALM");
        assert_eq!(format!("{:?}", Reason(0x77)), "Reason(0x77)");
    }
}
