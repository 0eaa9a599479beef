//! Sans-IO wire logic for Switchyard's TCP port: sniffing the first bytes of
//! a connection, the HTTP/1.1 codec (request heads, chunked request bodies,
//! response heads), the HTTP/2 server connection, and HTTP/3 framing and QPACK.
//!
//! Nothing here touches a socket, a clock or an executor: every function takes
//! bytes and returns a decision or bytes, so it is unit-tested on raw input and
//! fuzzed (`fuzz/`). The sessions in `switchyard-sessions` drive it.
//!
//! | module | does | refuses |
//! |---|---|---|
//! | [`sniff`] | TLS / h2c prior knowledge / BitTorrent / HTTP/1 from the first bytes | to guess on too few bytes |
//! | [`h1`] | request heads (RFC 9112 §2–§6) | oversized heads, ambiguous framing |
//! | [`chunked`] | chunked request bodies (RFC 9112 §7.1) | bodies over the limit, sloppy line ends |
//! | [`client`] | the proxy's side of HTTP/1.1: request heads out, member response heads in | ambiguous framing, oversized heads |
//! | [`response`] | response heads | to let callers' headers contradict the framing |
//! | [`peer`] | a seed's BitTorrent peer-wire session (BEP 3, 9, 10) | oversized messages, long or out-of-range requests, floods |
//! | [`h2`] | an HTTP/2 server connection (RFC 9113): frames, streams, flow control | stream and connection errors with the RFC's codes, floods, rapid reset |
//! | [`hpack`] | HTTP/2 header blocks (RFC 7541) both ways | undecodable blocks (COMPRESSION_ERROR) |
//! | [`h3`] | HTTP/3 (RFC 9114) request, control and QPACK streams; QPACK field sections without a dynamic table (RFC 9204) | frame sequences, settings, stream types and QPACK references the RFCs forbid, with their codes |
//! | [`hq`] | HTTP/0.9 request lines of `hq-interop` over QUIC | other methods, overlong lines |

pub mod chunked;
pub mod client;
pub mod h1;
pub mod h2;
pub mod h2c;
pub mod h3;
mod head;
pub mod hpack;
pub mod hq;
pub mod mse;
pub mod peer;
pub mod priority;
pub mod response;
pub mod sniff;

pub use chunked::{ChunkedDecoder, ChunkedError, Decoded};
pub use h1::{
    BodyKind, H1Limits, HostMemo, Parse, RequestError, RequestHead, parse_request_head,
    parse_request_head_with,
};
pub use response::{Fields, Framing, ServerFields, write_continue, write_response_head};
pub use sniff::{Protocol, Sniff, classify};
