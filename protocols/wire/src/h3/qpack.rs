//! QPACK (RFC 9204): the header compression of HTTP/3, without a dynamic table.
//!
//! The server announces SETTINGS_QPACK_MAX_TABLE_CAPACITY 0 (the default), so a client's field
//! sections refer to the static table and literals only, and nothing it sends can block a
//! stream. The server's encoder uses the static table only, so the client's decoder has nothing
//! to acknowledge. RFC 9204 §4.2 lets both sides leave the encoder and decoder streams unopened
//! in that case; a client that opens them anyway is held to what a table of capacity 0 allows.
//!
//! * [`Decoder`] turns a request's field section into fields. Every error (a dynamic or
//!   post-base reference, a nonzero Required Insert Count, an index past the static table, a
//!   bad integer, string or Huffman code) is QPACK_DECOMPRESSION_FAILED (§2.2.3, §6).
//! * [`put_headers_frame`] writes a response's HEADERS frame: `:status` and every field with a
//!   static entry by index, other names from the table by reference, strings raw (Huffman coding
//!   would save a few octets at a cost per bit on every response).
//! * [`encoder_instructions`] and [`decoder_instructions`] check the client's QPACK streams.

use bytes::BytesMut;

use super::frame::{Code, H3Error, HEADERS};
use crate::hpack::{self, Known, Recent, integer, put_integer};

/// The static table (RFC 9204 Appendix A), index 0 first.
const STATIC: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

fn failed(what: &'static str) -> H3Error {
    H3Error::Connection(Code::QPACK_DECOMPRESSION_FAILED, what)
}

fn hpack_failed(e: hpack::HpackError) -> H3Error {
    match e {
        hpack::HpackError::Huffman => failed("bad Huffman string in a field section"),
        hpack::HpackError::Truncated => failed("a string runs past the field section"),
        _ => failed("bad integer in a field section"),
    }
}

/// Decodes the client's field sections (RFC 9204 §4.5). It holds no table, only scratch space
/// and the last few Huffman strings decoded.
#[derive(Debug, Default)]
pub struct Decoder {
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
    recent: Recent,
}

impl Decoder {
    /// Decode one field section, calling `field(name, value)` for each field line in order.
    pub fn decode(
        &mut self,
        section: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), H3Error> {
        let mut rest = section;
        // §4.5.1: the prefix. With no table, the Required Insert Count is 0 (§4.5.1.1: an
        // encoded count the decoder cannot have reached is an error), and a negative Base
        // (sign bit set, §4.5.1.2) cannot be.
        let required = integer(&mut rest, 8).map_err(hpack_failed)?;
        if required != 0 {
            return Err(failed(
                "field section refers to a dynamic table of capacity 0",
            ));
        }
        let sign = rest.first().is_some_and(|b| b & 0x80 != 0);
        integer(&mut rest, 7).map_err(hpack_failed)?;
        if sign {
            return Err(failed("field section has a negative base"));
        }
        let Decoder {
            name_buf,
            value_buf,
            recent,
        } = self;
        while let Some(&first) = rest.first() {
            if first & 0x80 != 0 {
                // §4.5.2: indexed field line; the T bit says static.
                if first & 0x40 == 0 {
                    return Err(failed("indexed field line refers to the dynamic table"));
                }
                let (name, value) = static_entry(integer(&mut rest, 6).map_err(hpack_failed)?)?;
                field(name.as_bytes(), value.as_bytes());
            } else if first & 0x40 != 0 {
                // §4.5.4: literal field line with name reference.
                if first & 0x10 == 0 {
                    return Err(failed("field line names a dynamic table entry"));
                }
                let (name, _) = static_entry(integer(&mut rest, 4).map_err(hpack_failed)?)?;
                let value = hpack::string(&mut rest, 7, value_buf, recent).map_err(hpack_failed)?;
                field(name.as_bytes(), value);
            } else if first & 0x20 != 0 {
                // §4.5.6: literal field line with literal name; its length has a 3-bit prefix.
                let name = hpack::string(&mut rest, 3, name_buf, recent).map_err(hpack_failed)?;
                let value = hpack::string(&mut rest, 7, value_buf, recent).map_err(hpack_failed)?;
                field(name, value);
            } else {
                // §4.5.3, §4.5.5: post-base references, into the dynamic table.
                return Err(failed("field line refers to a post-base index"));
            }
        }
        Ok(())
    }
}

fn static_entry(index: usize) -> Result<(&'static str, &'static str), H3Error> {
    STATIC
        .get(index)
        .copied()
        .ok_or(failed("static table index out of range"))
}

/// For a response field: its static-table entry when one has exactly this value, else the
/// index of an entry with its name. Only names a response may carry are looked up.
fn static_ref(name: &str, value: &[u8]) -> (Option<usize>, Option<usize>) {
    let exact = |candidates: &[usize]| {
        candidates
            .iter()
            .copied()
            .find(|&i| STATIC[i].1.as_bytes() == value)
    };
    let (exact, name) = match name {
        "age" => (exact(&[2]), 2),
        "content-disposition" => (None, 3),
        "content-length" => (exact(&[4]), 4),
        "date" => (None, 6),
        "etag" => (None, 7),
        "last-modified" => (None, 10),
        "link" => (None, 11),
        "location" => (None, 12),
        "set-cookie" => (None, 14),
        "accept-ranges" => (exact(&[32]), 32),
        "access-control-allow-headers" => (exact(&[33, 34, 75]), 33),
        "access-control-allow-origin" => (exact(&[35]), 35),
        "cache-control" => (exact(&[36, 37, 38, 39, 40, 41]), 36),
        "content-encoding" => (exact(&[42, 43]), 42),
        "content-type" => (exact(&[44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54]), 44),
        "strict-transport-security" => (exact(&[56, 57, 58]), 56),
        "vary" => (exact(&[59, 60]), 59),
        "x-content-type-options" => (exact(&[61]), 61),
        "x-xss-protection" => (exact(&[62]), 62),
        "access-control-allow-credentials" => (exact(&[73, 74]), 73),
        "access-control-allow-methods" => (exact(&[76, 77, 78]), 76),
        "access-control-expose-headers" => (exact(&[79]), 79),
        "alt-svc" => (exact(&[83]), 83),
        "content-security-policy" => (exact(&[85]), 85),
        "server" => (None, 92),
        "timing-allow-origin" => (exact(&[93]), 93),
        "x-frame-options" => (exact(&[97, 98]), 97),
        _ => return (None, None),
    };
    (exact, Some(name))
}

/// Writes the field lines of one response section.
#[derive(Debug)]
pub struct FieldWriter<'a> {
    out: &'a mut BytesMut,
}

impl FieldWriter<'_> {
    /// A field by name (lowercase, as `http::HeaderName` holds it).
    pub fn field(&mut self, name: &str, value: &[u8]) {
        match static_ref(name, value) {
            (Some(index), _) => put_integer(self.out, 0xc0, 6, index),
            (None, Some(index)) => {
                // §4.5.4: literal with a static name reference (01 N=0 T=1).
                put_integer(self.out, 0x50, 4, index);
                put_string(self.out, value);
            }
            (None, None) => {
                // §4.5.6: literal name (001 N=0 H=0), 3-bit length prefix.
                put_integer(self.out, 0x20, 3, name.len());
                self.out.extend_from_slice(name.as_bytes());
                put_string(self.out, value);
            }
        }
    }

    /// A field every response carries, without looking its name up.
    pub fn known(&mut self, field: Known, value: &[u8]) {
        let index = match field {
            Known::Server => 92,
            Known::Date => 6,
            Known::ContentLength => 4,
            Known::AltSvc => 83,
        };
        put_integer(self.out, 0x50, 4, index);
        put_string(self.out, value);
    }
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    put_integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// Append a HEADERS frame (RFC 9114 §7.2.2) holding `:status` (none in trailers) and the
/// fields `fields` writes.
pub fn put_headers_frame(
    out: &mut BytesMut,
    status: Option<u16>,
    fields: impl FnOnce(&mut FieldWriter<'_>),
) {
    let start = out.len();
    // The frame type and a two-octet length, filled in below; then the section prefix:
    // Required Insert Count 0, Base 0 (§4.5.1).
    out.extend_from_slice(&[HEADERS as u8, 0x40, 0x00, 0x00, 0x00]);
    if let Some(status) = status {
        put_status(out, status);
    }
    fields(&mut FieldWriter { out });
    let len = out.len() - start - 3;
    if len < 1 << 14 {
        let [high, low] = (0x4000 | len as u16).to_be_bytes();
        out[start + 1] = high;
        out[start + 2] = low;
    } else {
        // A section of 16 KiB or more needs a longer length: write the header again.
        let section = out.split_off(start + 3);
        out.truncate(start);
        super::frame::put_frame_header(out, HEADERS, len as u64);
        out.unsplit(section);
    }
}

/// `:status` by its static entry, or by the entry's name and the code as a literal.
fn put_status(out: &mut BytesMut, status: u16) {
    let status_index = match status {
        103 => Some(24),
        200 => Some(25),
        304 => Some(26),
        404 => Some(27),
        503 => Some(28),
        100 => Some(63),
        204 => Some(64),
        206 => Some(65),
        302 => Some(66),
        400 => Some(67),
        403 => Some(68),
        421 => Some(69),
        425 => Some(70),
        500 => Some(71),
        _ => None,
    };
    match status_index {
        Some(index) => put_integer(out, 0xc0, 6, index),
        None => {
            put_integer(out, 0x50, 4, 24);
            put_string(out, itoa::Buffer::new().format(status).as_bytes());
        }
    }
}

/// §4.3: instructions on the client's encoder stream, consumed from `buf` as far as they are
/// complete. With a table capacity of 0, only "Set Dynamic Table Capacity" to 0 is valid;
/// anything else exceeds the capacity (§4.3.1, §4.3.2): QPACK_ENCODER_STREAM_ERROR.
pub fn encoder_instructions(buf: &mut BytesMut) -> Result<(), H3Error> {
    let error = |what| H3Error::Connection(Code::QPACK_ENCODER_STREAM_ERROR, what);
    while let Some(&first) = buf.first() {
        if first & 0xe0 != 0x20 {
            return Err(error("insertion into a dynamic table of capacity 0"));
        }
        match prefixed(buf, 5).map_err(|()| error("bad integer on the encoder stream"))? {
            None => break,
            Some((0, used)) => {
                let _ = buf.split_to(used);
            }
            Some(_) => return Err(error("dynamic table capacity above the maximum of 0")),
        }
    }
    Ok(())
}

/// §4.4: instructions on the client's decoder stream, consumed from `buf` as far as they are
/// complete. Our sections never refer to the dynamic table, so there is nothing to acknowledge
/// (§4.4.1) and no insertion to count (§4.4.3); only Stream Cancellation (§4.4.2) is valid.
pub fn decoder_instructions(buf: &mut BytesMut) -> Result<(), H3Error> {
    let error = |what| H3Error::Connection(Code::QPACK_DECODER_STREAM_ERROR, what);
    while let Some(&first) = buf.first() {
        if first & 0xc0 != 0x40 {
            return Err(error(if first & 0x80 != 0 {
                "acknowledgment of a section without dynamic references"
            } else {
                "insert count increment without insertions"
            }));
        }
        match prefixed(buf, 6).map_err(|()| error("bad integer on the decoder stream"))? {
            None => break,
            Some((_, used)) => {
                let _ = buf.split_to(used);
            }
        }
    }
    Ok(())
}

/// A prefixed integer at the start of `buf` and the octets it takes; `None` when `buf` ends
/// inside it; an error when it does not fit.
fn prefixed(buf: &[u8], prefix: u8) -> Result<Option<(usize, usize)>, ()> {
    let mask = (1u8 << prefix) - 1;
    let end = if buf[0] & mask != mask {
        1
    } else {
        match buf[1..].iter().position(|b| b & 0x80 == 0) {
            Some(i) => i + 2,
            None if buf.len() > 6 => return Err(()),
            None => return Ok(None),
        }
    };
    let mut rest = &buf[..end];
    integer(&mut rest, prefix)
        .map(|value| Some((value, end)))
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(section: &[u8]) -> Result<Vec<(String, String)>, H3Error> {
        let mut out = Vec::new();
        Decoder::default().decode(section, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        })?;
        Ok(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_static_table_is_the_rfcs() {
        assert_eq!(STATIC.len(), 99);
        assert_eq!(STATIC[0], (":authority", ""));
        assert_eq!(STATIC[17], (":method", "GET"));
        assert_eq!(STATIC[25], (":status", "200"));
        assert_eq!(STATIC[59], ("vary", "accept-encoding"));
        assert_eq!(STATIC[71], (":status", "500"));
        assert_eq!(STATIC[92], ("server", ""));
        assert_eq!(STATIC[98], ("x-frame-options", "sameorigin"));
        // Every name the encoder refers to is the name at that index.
        for (name, value) in STATIC {
            if name.starts_with(':') {
                continue;
            }
            if let (exact, Some(index)) = static_ref(name, value.as_bytes()) {
                assert_eq!(STATIC[index].0, name);
                if let Some(exact) = exact {
                    assert_eq!(STATIC[exact], (name, value));
                }
            }
        }
    }

    /// RFC 9204 Appendix B.1: a literal with a static name reference (`:path /index.html`).
    #[test]
    fn decodes_the_rfcs_example_and_each_representation() {
        let section = [
            0x00, 0x00, 0x51, 0x0b, 0x2f, 0x69, 0x6e, 0x64, 0x65, 0x78, 0x2e, 0x68, 0x74, 0x6d,
            0x6c,
        ];
        assert_eq!(decode(&section), Ok(pairs(&[(":path", "/index.html")])));
        // Indexed static (:method GET, :scheme https), a literal name, a Huffman value
        // ("www.example.com", RFC 7541 C.4.1).
        let mut section = vec![0x00, 0x00, 0xd1, 0xd7, 0x23, b'x', b'-', b'a', 0x01, b'b'];
        section.extend_from_slice(&[
            0x50, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ]);
        assert_eq!(
            decode(&section),
            Ok(pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                ("x-a", "b"),
                (":authority", "www.example.com"),
            ]))
        );
        // A Huffman-coded literal name: H is the bit above the 3-bit length.
        // ("a" is 00011, padded with ones.)
        let section = [0x00, 0x00, 0x29, 0x1f, 0x01, b'1'];
        assert_eq!(decode(&section), Ok(pairs(&[("a", "1")])));
    }

    #[test]
    fn dynamic_references_and_bad_input_fail_decompression() {
        let refused: &[&[u8]] = &[
            // Required Insert Count 1.
            &[0x02, 0x00, 0xd1],
            // Negative base.
            &[0x00, 0x80, 0xd1],
            // Indexed dynamic, literal with dynamic name, post-base indexed and named.
            &[0x00, 0x00, 0x80],
            &[0x00, 0x00, 0x40, 0x01, b'a'],
            &[0x00, 0x00, 0x10],
            &[0x00, 0x00, 0x00, 0x01, b'a'],
            // Static index 99 (past the table).
            &[0x00, 0x00, 0xff, 0x24],
            // A value longer than the section; an empty prefix.
            &[0x00, 0x00, 0x51, 0x05, b'/'],
            &[0x00],
            // Huffman with EOS in it.
            &[0x00, 0x00, 0x51, 0x84, 0xff, 0xff, 0xff, 0xff],
        ];
        for section in refused {
            assert_eq!(
                decode(section).map_err(H3Error::code),
                Err(Code::QPACK_DECOMPRESSION_FAILED),
                "{section:02x?}"
            );
        }
    }

    #[test]
    fn response_sections_decode_to_what_was_written() {
        for status in [200, 206, 304, 404, 418, 425, 599] {
            let mut out = BytesMut::new();
            put_headers_frame(&mut out, Some(status), |w| {
                w.known(Known::Server, b"switchyard");
                w.known(Known::Date, b"Sat, 05 Dec 2026 02:00:00 GMT");
                w.known(Known::ContentLength, b"1024");
                w.known(Known::AltSvc, b"h3=\":443\"; ma=86400");
                w.field("content-type", b"text/html; charset=utf-8");
                w.field("content-type", b"application/wasm");
                w.field("vary", b"accept-encoding");
                w.field("etag", b"\"1-2\"");
                w.field("x-custom", b"yes");
            });
            let (kind, len, at) = super::super::frame::frame_header(&out).unwrap();
            assert_eq!((kind, len as usize), (HEADERS, out.len() - at));
            let fields = decode(&out[at..]).unwrap();
            assert_eq!(
                fields,
                pairs(&[
                    (":status", &status.to_string()),
                    ("server", "switchyard"),
                    ("date", "Sat, 05 Dec 2026 02:00:00 GMT"),
                    ("content-length", "1024"),
                    ("alt-svc", "h3=\":443\"; ma=86400"),
                    ("content-type", "text/html; charset=utf-8"),
                    ("content-type", "application/wasm"),
                    ("vary", "accept-encoding"),
                    ("etag", "\"1-2\""),
                    ("x-custom", "yes"),
                ])
            );
        }
        // A section of more than 16 KiB takes a four-octet length.
        let big = vec![b'a'; 20_000];
        let mut out = BytesMut::from(&b"before"[..]);
        put_headers_frame(&mut out, Some(200), |w| w.field("x-big", &big));
        let (kind, len, at) = super::super::frame::frame_header(&out[6..]).unwrap();
        assert_eq!((kind, at, len as usize), (HEADERS, 5, out.len() - 6 - at));
        assert_eq!(decode(&out[6 + at..]).unwrap()[1].1.len(), 20_000);
    }

    #[test]
    fn client_qpack_streams_may_only_do_what_capacity_zero_allows() {
        let mut buf = BytesMut::from(&[0x20, 0x20][..]);
        assert_eq!(encoder_instructions(&mut buf), Ok(()));
        assert!(buf.is_empty());
        for bad in [
            &[0x21][..],
            &[0x3f, 0x01],
            &[0xc0, 0x01, b'a'],
            &[0x40],
            &[0x00],
        ] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                encoder_instructions(&mut buf).map_err(H3Error::code),
                Err(Code::QPACK_ENCODER_STREAM_ERROR),
                "{bad:02x?}"
            );
        }
        // A capacity split across reads waits for its end.
        let mut buf = BytesMut::from(&[0x3f][..]);
        assert_eq!(encoder_instructions(&mut buf), Ok(()));
        assert_eq!(buf.len(), 1);

        let mut buf = BytesMut::from(&[0x44, 0x7f, 0x80][..]);
        assert_eq!(decoder_instructions(&mut buf), Ok(()));
        assert_eq!(&buf[..], &[0x7f, 0x80]);
        for bad in [&[0x84][..], &[0x01], &[0x00]] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                decoder_instructions(&mut buf).map_err(H3Error::code),
                Err(Code::QPACK_DECODER_STREAM_ERROR),
                "{bad:02x?}"
            );
        }
    }
}
