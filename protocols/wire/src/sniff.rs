//! Classify a TCP connection by its first bytes.
//!
//! Every protocol Switchyard speaks on its TCP port announces itself in the
//! first few bytes the client sends:
//!
//! * TLS starts with a record header for a handshake record whose first
//!   handshake message is a ClientHello (RFC 8446 §5.1, §4):
//!   `0x16 0x03 0x0? LEN LEN 0x01`;
//! * HTTP/2 with prior knowledge starts with the 24-byte connection preface
//!   `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113 §3.4);
//! * a BitTorrent peer starts with the handshake `0x13 "BitTorrent protocol"`
//!   (BEP 3);
//! * an HTTP/1.x request starts with its method, a token, then a space (or
//!   with an empty line, which RFC 9112 §2.2 lets a server skip);
//! * anything else is opaque: possibly a BitTorrent peer opening with an
//!   encrypted (MSE) handshake, whose first bytes are a random public key; the
//!   acceptor decides what to do with it (without seeding, the HTTP/1.1
//!   session answers it 400).
//!
//! [`classify`] is a pure function of the bytes seen so far. It never guesses:
//! while the prefix could still become more than one protocol it answers
//! [`Sniff::Need`], and an answer given for a prefix stays the same for every
//! longer input that starts with that prefix. It does not wait, read or time
//! out; bounding the wait for more bytes is the acceptor's job.

/// What a connection speaks, as far as the first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A TLS ClientHello: hand the connection to rustls, then ALPN decides.
    Tls,
    /// The HTTP/2 connection preface sent with prior knowledge (h2c).
    H2Prior,
    /// The BitTorrent peer-wire handshake.
    BitTorrent,
    /// HTTP/1.x: a method token and a space, or a leading empty line. Also a
    /// token too long to be a method, which that session rejects.
    Http1,
    /// Not the start of any of the above: an encrypted BitTorrent handshake,
    /// or garbage.
    Opaque,
}

/// The outcome of looking at a prefix of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sniff {
    /// Undecided: at least this many bytes in total (always more than the
    /// prefix held) are needed before an answer can be given.
    Need(usize),
    /// Decided; more bytes will never change the answer.
    Is(Protocol),
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4): "the connection
/// preface starts with the string `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`".
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The BitTorrent handshake opening (BEP 3): "The handshake starts with
/// character nineteen (decimal) followed by the string 'BitTorrent protocol'."
pub const BT_HANDSHAKE: &[u8; 20] = b"\x13BitTorrent protocol";

/// Bytes needed to recognise a TLS ClientHello: the 5-byte record header
/// and the handshake type that follows it.
const TLS_DECISION_LEN: usize = 6;

/// TLS `ContentType.handshake` (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// TLS `HandshakeType.client_hello` (RFC 8446 §4).
const TLS_CLIENT_HELLO: u8 = 0x01;

/// Classifies the first bytes of a TCP connection.
///
/// `prefix` is everything received so far (peeked, not consumed). Returns
/// [`Sniff::Need`] with the smallest total length at which an answer may be
/// possible, or the protocol once no other answer is possible.
pub fn classify(prefix: &[u8]) -> Sniff {
    let Some(&first) = prefix.first() else {
        return Sniff::Need(1);
    };
    match first {
        TLS_HANDSHAKE_RECORD => classify_tls(prefix),
        b'P' => classify_literal(prefix, H2_PREFACE, Protocol::H2Prior),
        0x13 => classify_literal(prefix, BT_HANDSHAKE, Protocol::BitTorrent),
        _ => classify_http1(prefix),
    }
}

/// Longest method token waited for: past it, the HTTP/1 session answers.
const MAX_METHOD: usize = 32;

/// HTTP/1 if the prefix is a method token followed by a space (RFC 9112 §3:
/// `request-line = method SP request-target SP HTTP-version`), or starts with
/// CR or LF (an empty line before the request, §2.2); opaque at the first
/// byte that can be neither.
fn classify_http1(prefix: &[u8]) -> Sniff {
    if matches!(prefix.first(), Some(b'\r' | b'\n')) {
        return Sniff::Is(Protocol::Http1);
    }
    for (i, &b) in prefix.iter().enumerate().take(MAX_METHOD) {
        match b {
            b' ' if i > 0 => return Sniff::Is(Protocol::Http1),
            b if is_tchar(b) => {}
            _ => return Sniff::Is(Protocol::Opaque),
        }
    }
    if prefix.len() >= MAX_METHOD {
        Sniff::Is(Protocol::Http1)
    } else {
        Sniff::Need(prefix.len() + 1)
    }
}

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
/// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// TLS: `0x16`, legacy record version `0x03 0x00..=0x04`, a two-byte
/// length (any value: it cannot rule TLS out), then handshake type `0x01`.
/// The first byte is already known to be `0x16`.
fn classify_tls(prefix: &[u8]) -> Sniff {
    // RFC 8446 §5.1: "legacy_record_version: MUST be set to 0x0303 for all
    // records generated by a TLS 1.3 implementation other than an initial
    // ClientHello (i.e., one not generated after a HelloRetryRequest), where
    // it MAY also be 0x0301 for compatibility purposes." Older stacks send
    // 0x0300..=0x0303; 0x0304 is tolerated.
    match prefix.get(1) {
        None => return Sniff::Need(2),
        Some(0x03) => {}
        Some(_) => return Sniff::Is(Protocol::Opaque),
    }
    match prefix.get(2) {
        None => return Sniff::Need(3),
        Some(0x00..=0x04) => {}
        Some(_) => return Sniff::Is(Protocol::Opaque),
    }
    // Bytes 3 and 4 are the record length: no value of theirs decides.
    match prefix.get(5) {
        None => Sniff::Need(TLS_DECISION_LEN),
        Some(&TLS_CLIENT_HELLO) => Sniff::Is(Protocol::Tls),
        Some(_) => Sniff::Is(Protocol::Opaque),
    }
}

/// A protocol announced by a fixed byte string: it is that protocol once the
/// whole string is there; from the first byte that differs, whatever
/// [`classify_http1`] makes of the prefix.
fn classify_literal(prefix: &[u8], literal: &[u8], protocol: Protocol) -> Sniff {
    let seen = prefix.len().min(literal.len());
    match (prefix.get(..seen), literal.get(..seen)) {
        (Some(have), Some(want)) if have == want => {
            if seen == literal.len() {
                Sniff::Is(protocol)
            } else {
                // The next byte may already tell HTTP/1 apart.
                Sniff::Need(seen + 1)
            }
        }
        _ => classify_http1(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_HELLO: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    const HTTP1_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    /// Feeds `input` one byte at a time: every shorter prefix must ask for
    /// more (and for no more than is needed), the prefix of `decided_at`
    /// bytes and every longer one must answer `want`.
    fn assert_fed_bytewise(input: &[u8], decided_at: usize, want: Protocol) {
        assert_eq!(classify(&[]), Sniff::Need(1));
        for len in 1..=input.len() {
            let got = classify(&input[..len]);
            if len < decided_at {
                match got {
                    Sniff::Need(n) => {
                        assert!(n > len, "Need({n}) for {len} bytes of {input:?}");
                        assert!(n <= decided_at, "Need({n}) overshoots {decided_at}");
                    }
                    Sniff::Is(p) => panic!("early {p:?} after {len} bytes of {input:?}"),
                }
            } else {
                assert_eq!(got, Sniff::Is(want), "after {len} bytes of {input:?}");
            }
        }
    }

    #[test]
    fn whole_inputs() {
        let cases: &[(&[u8], Protocol)] = &[
            (CLIENT_HELLO, Protocol::Tls),
            (H2_PREFACE, Protocol::H2Prior),
            (BT_HANDSHAKE, Protocol::BitTorrent),
            (HTTP1_GET, Protocol::Http1),
            (b"PRI / HTTP/1.1\r\nHost: a\r\n\r\n", Protocol::Http1),
            (b"POST /x HTTP/1.1\r\n", Protocol::Http1),
            (b"\x00\x01\x02\xff", Protocol::Opaque),
            (b"\x13Bittorrent protocol", Protocol::Opaque),
            (b"\r\nGET / HTTP/1.1\r\n", Protocol::Http1),
            (b"M-SEARCH * HTTP/1.1\r\n", Protocol::Http1),
            (b"GET\x00/ HTTP/1.1\r\n", Protocol::Opaque),
            (&[b'A'; MAX_METHOD], Protocol::Http1),
        ];
        for &(input, want) in cases {
            assert_eq!(classify(input), Sniff::Is(want), "{input:?}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        assert_fed_bytewise(CLIENT_HELLO, 6, Protocol::Tls);
        assert_fed_bytewise(H2_PREFACE, 24, Protocol::H2Prior);
        assert_fed_bytewise(BT_HANDSHAKE, 20, Protocol::BitTorrent);
        assert_fed_bytewise(HTTP1_GET, 4, Protocol::Http1);
    }

    #[test]
    fn preface_and_bittorrent_followed_by_more_bytes() {
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_fed_bytewise(&h2, 24, Protocol::H2Prior);
        let mut bt = BT_HANDSHAKE.to_vec();
        bt.extend_from_slice(&[0; 8]);
        assert_fed_bytewise(&bt, 20, Protocol::BitTorrent);
    }

    #[test]
    fn prefixes_shared_with_http1() {
        // `P` could start the preface or a PUT/POST/PATCH/PRI request.
        assert_eq!(classify(b"P"), Sniff::Need(2));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Sniff::Need(17));
        // HTTP/1 requests that share a prefix with the preface are decided
        // at the first differing byte, not before.
        let cases: &[(&[u8], usize)] = &[
            (b"PUT / HTTP/1.1\r\n", 4),
            (b"POST / HTTP/1.1\r\n", 5),
            (b"PRI / HTTP/1.1\r\nHost: a\r\n\r\n", 5),
            (b"PRI * HTTP/1.1\r\nHost: a\r\n\r\n", 12),
            (b"PRI * HTTP/2.0\r\n\r\nGET", 19),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r", 24),
        ];
        for &(input, at) in cases {
            assert_fed_bytewise(input, at, Protocol::Http1);
        }
    }

    #[test]
    fn tls_record_header_without_client_hello_is_opaque() {
        let cases: &[(&[u8], usize)] = &[
            // Handshake record carrying a ServerHello (type 2).
            (&[0x16, 0x03, 0x03, 0x00, 0x30, 0x02, 0x00], 6),
            // Handshake record with an SSLv2-era or future major version.
            (&[0x16, 0x02, 0x00, 0x00, 0x30, 0x01], 2),
            (&[0x16, 0x03, 0x05, 0x00, 0x30, 0x01], 3),
            // Alert record (0x15) and application data (0x17) are not ClientHellos.
            (&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02], 1),
            (&[0x17, 0x03, 0x03, 0x00, 0x02, 0x01], 1),
        ];
        for &(input, at) in cases {
            assert_fed_bytewise(input, at, Protocol::Opaque);
        }
        // Every legacy record version minor 0..=4 is TLS.
        for minor in 0..=4u8 {
            assert_eq!(
                classify(&[0x16, 0x03, minor, 0x01, 0x00, 0x01]),
                Sniff::Is(Protocol::Tls)
            );
        }
    }

    #[test]
    fn tls_waits_for_the_handshake_type() {
        assert_eq!(classify(&[0x16]), Sniff::Need(2));
        assert_eq!(classify(&[0x16, 0x03]), Sniff::Need(3));
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Sniff::Need(6));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x00]), Sniff::Need(6));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x00, 0x00]), Sniff::Need(6));
    }

    #[test]
    fn garbage_is_opaque_at_the_first_byte_no_request_line_has() {
        let cases: &[(&[u8], usize)] = &[
            (b"\x00", 1),
            (b"\xff\xfe", 1),
            (b" GET", 1),
            (b"GET\t/", 4),
            (b"SSH-2.0-OpenSSH_9.2\r\n", 20),
        ];
        for &(input, at) in cases {
            assert_fed_bytewise(input, at, Protocol::Opaque);
        }
        assert_fed_bytewise(b"\r\n", 1, Protocol::Http1);
    }
}
