//! The request fields that change how a head is framed or answered:
//! Content-Length, Transfer-Encoding, Connection and Expect.
//!
//! Each is a list-valued or singleton field whose raw value httparse hands
//! over already trimmed of surrounding whitespace. These helpers are called
//! once per field line and fold several lines of the same field together,
//! as RFC 9110 §5.3 says a recipient may ("A recipient MAY combine multiple
//! field lines within a field section that have the same field name into
//! one field line ... by appending each subsequent field line value to the
//! initial field line value in order, separated by a comma").

use http::Version;

use super::{BodyKind, RequestError};

/// Iterates over the non-empty elements of a comma-separated list, each
/// trimmed of optional whitespace. RFC 9110 §5.6.1: "a recipient MUST parse
/// and ignore a reasonable number of empty list elements".
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Strips OWS (SP / HTAB) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2: token = 1*tchar.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// RFC 9110 §5.6.2: "tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
/// "_" / "`" / "|" / "~" / DIGIT / ALPHA".
pub(crate) const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Parses one Content-Length field line, given the value of the earlier
/// ones, if any.
///
/// RFC 9110 §8.6: "Content-Length = 1*DIGIT". "a recipient MAY either reject
/// the message as invalid or replace that invalid field value with a single
/// instance of the decimal value" when it is "a list consisting of
/// identical decimal values (e.g., "Content-Length: 42, 42")", or several
/// field lines with identical values. We accept identical values and refuse
/// anything else, including empty list elements, signs and overflow.
pub(super) fn content_length(value: &[u8], previous: Option<u64>) -> Result<u64, RequestError> {
    let mut found = previous;
    for element in value.split(|&b| b == b',') {
        let digits = trim_ows(element);
        let len =
            parse_decimal(digits).ok_or(RequestError::BadRequest("invalid Content-Length"))?;
        match found {
            Some(earlier) if earlier != len => {
                // RFC 9112 §6.3: "If a message is received without
                // Transfer-Encoding and with an invalid Content-Length header
                // field, then the message framing is invalid and the
                // recipient MUST treat it as an unrecoverable error ... the
                // server MUST respond with a 400 (Bad Request) status code
                // and then close the connection."
                return Err(RequestError::BadRequest(
                    "conflicting Content-Length values",
                ));
            }
            _ => found = Some(len),
        }
    }
    found.ok_or(RequestError::BadRequest("invalid Content-Length"))
}

/// `1*DIGIT` as a u64; `None` if empty, not all digits, or too large.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The transfer codings of a request, folded over all its
/// Transfer-Encoding field lines (RFC 9112 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct TransferCoding {
    /// A Transfer-Encoding field was present at all.
    present: bool,
    /// How many times `chunked` was listed.
    chunked: u32,
    /// Whether the last coding listed so far is `chunked`.
    last_is_chunked: bool,
    /// Whether a coding other than `chunked` was listed.
    other: bool,
}

impl TransferCoding {
    /// Whether a Transfer-Encoding field was seen.
    pub(super) fn is_present(&self) -> bool {
        self.present
    }

    /// The framing the codings give a request body (RFC 9112 §6.3).
    pub(super) fn body_kind(&self) -> Result<BodyKind, RequestError> {
        // §6.3: "If a Transfer-Encoding header field is present in a request
        // and the chunked transfer coding is not the final encoding, the
        // message body length cannot be determined reliably; the server MUST
        // respond with the 400 (Bad Request) status code and then close the
        // connection." §7: "A sender MUST NOT apply the chunked transfer
        // coding more than once to a message body".
        if !self.last_is_chunked {
            return Err(RequestError::BadRequest(
                "chunked is not the final transfer coding",
            ));
        }
        if self.chunked > 1 {
            return Err(RequestError::BadRequest("chunked applied more than once"));
        }
        // §6.1: "A server that receives a request message with a transfer
        // coding it does not understand SHOULD respond with 501 (Not
        // Implemented)."
        if self.other {
            return Err(RequestError::NotImplemented(
                "transfer coding other than chunked",
            ));
        }
        Ok(BodyKind::Chunked)
    }
}

/// Folds one Transfer-Encoding field line into the codings seen so far.
/// `transfer-coding = token *( OWS ";" OWS transfer-parameter )`; coding
/// names are case-insensitive (RFC 9112 §7).
pub(super) fn transfer_coding(
    value: &[u8],
    mut codings: TransferCoding,
) -> Result<TransferCoding, RequestError> {
    codings.present = true;
    for element in list_elements(value) {
        let (name, has_params) = match memchr::memchr(b';', element) {
            Some(semi) => (trim_ows(element.get(..semi).unwrap_or_default()), true),
            None => (element, false),
        };
        if !is_token(name) {
            return Err(RequestError::BadRequest("invalid transfer coding"));
        }
        let is_chunked = name.eq_ignore_ascii_case(b"chunked");
        if is_chunked && has_params {
            // chunked defines no parameters (RFC 9112 §7.1).
            return Err(RequestError::BadRequest("parameters on chunked"));
        }
        if is_chunked {
            codings.chunked = codings.chunked.saturating_add(1);
        } else {
            codings.other = true;
        }
        codings.last_is_chunked = is_chunked;
    }
    Ok(codings)
}

/// The `Connection` options that matter to persistence (RFC 9112 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl ConnectionOptions {
    /// Folds in one Connection field line. Options are case-insensitive
    /// tokens (RFC 9110 §7.6.1); unknown ones are left to the caller.
    pub(super) fn add(&mut self, value: &[u8]) {
        for option in list_elements(value) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }

    /// Whether the `upgrade` option was present (RFC 9110 §7.8: an Upgrade field is only
    /// acted on when Connection names it).
    pub(super) fn upgrade(&self) -> bool {
        self.upgrade
    }

    /// RFC 9112 §9.3: "If the "close" connection option is present, the
    /// connection will not persist after the current response; else, If the
    /// received protocol is HTTP/1.1 (or later), the connection will persist
    /// after the current response; else, If the received protocol is
    /// HTTP/1.0, the "keep-alive" connection option is present, [...] the
    /// connection will persist after the current response; otherwise, the
    /// connection will close after the current response."
    pub(super) fn keep_alive(&self, version: Version) -> bool {
        if self.close {
            false
        } else if version == Version::HTTP_11 {
            true
        } else {
            self.keep_alive
        }
    }
}

/// Checks one Expect field line; `Ok(true)` if it asks for 100-continue.
///
/// RFC 9110 §10.1.1: "The only expectation defined by this specification is
/// "100-continue" (with no defined parameters)." and "A server that
/// receives an Expect field value containing a member other than
/// 100-continue MAY respond with a 417 (Expectation Failed) status code to
/// indicate that the unexpected expectation cannot be met."
pub(super) fn expect(value: &[u8]) -> Result<bool, RequestError> {
    let mut continue_expected = false;
    for member in list_elements(value) {
        if member.eq_ignore_ascii_case(b"100-continue") {
            continue_expected = true;
        } else {
            return Err(RequestError::ExpectationFailed);
        }
    }
    Ok(continue_expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"00042", Some(42)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"99999999999999999999999", None),
            (b"", None),
            (b"+1", None),
            (b"-1", None),
            (b"1 2", None),
            (b"0x10", None),
            (b"\xd9\xa1", None),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_decimal(input), want, "{input:?}");
        }
    }

    #[test]
    fn trims_ows_only() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(trim_ows(b"\r"), b"\r");
    }
}
