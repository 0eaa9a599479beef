//! HTTP/3 (RFC 9114), server side, sans-IO: [`frame`] for varints, frames and error codes,
//! [`qpack`] for field sections (RFC 9204, static table only), [`stream`] for reading what a
//! client sends on its request, control and QPACK streams. QUIC itself (packets, loss
//! recovery, flow control, stream limits) is quinn's; the session in `switchyard-sessions`
//! moves bytes between the two.

pub mod frame;
pub mod qpack;
pub mod stream;

pub use crate::hpack::Known;
pub use frame::{Code, H3Error};
pub use qpack::{Decoder, FieldWriter, put_headers_frame};
pub use stream::{Control, ControlReader, Part, RequestReader, UniKind, uni_kind};

use http::Version;

use crate::head::Fields;

/// Decode a request head's field section and check it as RFC 9114 §4.2 and §4.3 require
/// (the same rules as HTTP/2's). Returns the head and its Content-Length.
///
/// A decoding error ends the connection (QPACK_DECOMPRESSION_FAILED); a malformed request
/// is a stream error H3_MESSAGE_ERROR (§4.1.2); a head whose fields exceed `limit` octets
/// (counted as RFC 9114 §4.2.2 does) is `Ok(None)`: answer 431.
pub fn decode_request(
    decoder: &mut Decoder,
    section: &[u8],
    limit: u32,
) -> Result<Option<(http::request::Parts, Option<u64>)>, H3Error> {
    let mut fields = Fields::new(true, limit);
    decoder.decode(section, |name, value| fields.field(name, value))?;
    if fields.too_large {
        return Ok(None);
    }
    fields
        .into_request(Version::HTTP_3)
        .map(Some)
        .ok_or(H3Error::Stream(
            Code::H3_MESSAGE_ERROR,
            "malformed request head",
        ))
}

/// Decode a trailer section: the fields, or H3_MESSAGE_ERROR when one is malformed (a
/// pseudo-header among them, say).
pub fn decode_trailers(
    decoder: &mut Decoder,
    section: &[u8],
    limit: u32,
) -> Result<http::HeaderMap, H3Error> {
    let mut fields = Fields::new(false, limit);
    decoder.decode(section, |name, value| fields.field(name, value))?;
    if fields.malformed || fields.too_large {
        return Err(H3Error::Stream(
            Code::H3_MESSAGE_ERROR,
            "malformed trailers",
        ));
    }
    Ok(fields.headers)
}
