//! Request-head parsing on raw bytes, one table per concern.

use http::header::{self, HeaderValue};
use http::{Method, Version};

use super::*;

const LIMITS: H1Limits = H1Limits {
    max_request_line: 64,
    max_header_bytes: 128,
    max_headers: 8,
};

fn parse(input: &[u8]) -> Result<Parse, RequestError> {
    parse_request_head(input, &LIMITS)
}

/// Parses a whole head, failing the test unless it is Complete and consumed
/// exactly `input` (heads in these tables have no body attached).
fn complete(input: &[u8]) -> RequestHead {
    match parse(input) {
        Ok(Parse::Complete(head, used)) => {
            assert_eq!(used, input.len(), "consumed of {input:?}");
            head
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

/// Asserts that `input` is refused with `want`, whole and on every prefix
/// that already shows the fault: never Complete, and Partial only while the
/// fault is not visible yet.
fn refused(input: &[u8], want: RequestError) {
    match parse(input) {
        Err(got) => assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input)),
        Ok(other) => panic!(
            "{:?}: want {want:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
    for len in 0..input.len() {
        let prefix = &input[..len];
        if let Ok(Parse::Complete(..)) = parse(prefix) {
            panic!(
                "prefix {:?} of a refused head was Complete",
                String::from_utf8_lossy(prefix)
            );
        }
    }
}

#[test]
fn minimal_requests() {
    let head = complete(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(head.method, Method::GET);
    assert_eq!(head.path, "/");
    assert_eq!(head.query, None);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.host.as_deref(), Some("example.com"));
    assert_eq!(head.body, BodyKind::None);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    assert_eq!(
        head.headers.get(header::HOST),
        Some(&HeaderValue::from_static("example.com"))
    );

    let head = complete(b"GET /a/b%20c?x=1&y HTTP/1.0\r\n\r\n");
    assert_eq!(head.path, "/a/b%20c");
    assert_eq!(head.query.as_deref(), Some("x=1&y"));
    assert_eq!(head.version, Version::HTTP_10);
    assert_eq!(head.host, None);
    assert!(!head.keep_alive);
}

#[test]
fn fed_byte_at_a_time() {
    let input = b"POST /upload?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
    let head_len = input.len() - 6;
    for len in 0..head_len {
        assert!(
            matches!(parse(&input[..len]), Ok(Parse::Partial)),
            "prefix of {len}"
        );
    }
    for len in head_len..=input.len() {
        match parse(&input[..len]) {
            Ok(Parse::Complete(head, used)) => {
                assert_eq!(used, head_len);
                assert_eq!(head.body, BodyKind::Length(3));
            }
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn pipelined_requests_are_consumed_one_at_a_time() {
    let input = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let Ok(Parse::Complete(first, used)) = parse(input) else {
        panic!("first")
    };
    assert_eq!(first.path, "/1");
    let Ok(Parse::Complete(second, used2)) = parse(&input[used..]) else {
        panic!("second")
    };
    assert_eq!(second.path, "/2");
    assert_eq!(used + used2, input.len());
}

#[test]
fn line_endings() {
    // RFC 9112 §2.2: leading empty lines are skipped, bare LF is accepted
    // (httparse's behaviour), bare CR is not.
    let accepted: &[&[u8]] = &[
        b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\nHost: h\r\n\n",
    ];
    for &input in accepted {
        assert_eq!(complete(input).host.as_deref(), Some("h"));
    }
    let refused_cases: &[&[u8]] = &[
        b"\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\rHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\r",
        // More than the tolerated number of empty lines.
        b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for &input in refused_cases {
        assert!(
            matches!(parse(input), Err(RequestError::BadRequest(_))),
            "{input:?}"
        );
    }
    // Only empty lines so far: Partial while within the bound, refused after.
    assert!(matches!(parse(b"\r\n\r\n"), Ok(Parse::Partial)));
    assert!(matches!(parse(b"\r\n\r"), Ok(Parse::Partial)));
    assert!(matches!(
        parse(b"\n\n\n\n\n\n\n\n\n"),
        Err(RequestError::BadRequest(_))
    ));
}

#[test]
fn syntax_errors_are_400() {
    let cases: &[&[u8]] = &[
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x00\x00\x00\x00",
        b"GET\r\n\r\n",
        b"GET /\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /#frag HTTP/1.1\r\nHost: h\r\n\r\n",
        // RFC 9112 §5.1: no whitespace between field name and colon.
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
        // RFC 9112 §5.2: obsolete line folding.
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n",
        // Whitespace before the first field (RFC 9112 §2.2).
        b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
        // Invalid name and value bytes.
        b"GET / HTTP/1.1\r\nHost: h\r\nX(A): a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n",
    ];
    for &input in cases {
        assert!(
            matches!(parse(input), Err(RequestError::BadRequest(_))),
            "{:?}: {:?}",
            String::from_utf8_lossy(input),
            parse(input)
        );
    }
}

#[test]
fn garbage_is_refused_before_the_limits() {
    // Binary without a line end is refused at once, not after 64 bytes.
    assert!(matches!(
        parse(b"\x00\x01"),
        Err(RequestError::BadRequest(_))
    ));
    assert!(matches!(
        parse(b"GET /\x01"),
        Err(RequestError::BadRequest(_))
    ));
    assert!(matches!(
        parse(b"GET / HTTX"),
        Err(RequestError::BadRequest(_))
    ));
}

#[test]
fn obs_text_in_values_is_kept() {
    let head = complete(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9 \t x\r\n\r\n");
    assert_eq!(
        head.headers.get("x-a").map(HeaderValue::as_bytes),
        Some(&b"caf\xc3\xa9 \t x"[..])
    );
}

#[test]
fn versions() {
    let cases: &[(&[u8], Result<Version, u16>)] = &[
        (b"GET / HTTP/1.0\r\n\r\n", Ok(Version::HTTP_10)),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", Ok(Version::HTTP_11)),
        // RFC 9110 §2.5: a higher minor version is processed as 1.1.
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", Ok(Version::HTTP_11)),
        (b"GET / HTTP/1.9\r\nHost: h\r\n\r\n", Ok(Version::HTTP_11)),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", Err(505)),
        (b"GET / HTTP/3.0\r\n\r\n", Err(505)),
        (b"GET / HTTP/0.9\r\n\r\n", Err(505)),
        (b"GET / HTTP/2.0\n\n", Err(505)),
        (b"GET / HTTP/1.10\r\n\r\n", Err(400)),
        (b"GET / HTTP/11\r\n\r\n", Err(400)),
        (b"GET / http/1.1\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.x\r\n\r\n", Err(400)),
        (b"GET / HTTPS/1.1\r\n\r\n", Err(400)),
        (b"GET / HTTP/2\r\n\r\n", Err(400)),
        (b"GET / HTTP/2.0 \r\n\r\n", Err(400)),
        (b"GET /a b HTTP/2.0\r\n\r\n", Err(400)),
        (b"GET /a b HTTP/1.2\r\n\r\n", Err(400)),
        (b"GET /a b HTTP/1.1\r\n\r\n", Err(400)),
    ];
    for &(input, want) in cases {
        let got = match parse(input) {
            Ok(Parse::Complete(head, _)) => Ok(head.version),
            Ok(Parse::Partial) => panic!("{input:?}: Partial"),
            Err(err) => Err(err.status().as_u16()),
        };
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
    }
    // A version still being received waits; a version that cannot become
    // well-formed does not.
    for partial in [
        &b"GET / HTTP/2"[..],
        b"GET / HTTP/2.",
        b"GET / HTTP/2.0",
        b"GET / HTTP/2.0\r",
        b"GET / HTTP/1.2\r",
    ] {
        assert!(
            matches!(parse(partial), Ok(Parse::Partial)),
            "{partial:?}: {:?}",
            parse(partial)
        );
    }
    assert!(matches!(
        parse(b"GET / HTTP/2x"),
        Err(RequestError::BadRequest(_))
    ));
    assert!(matches!(
        parse(b"GET / HTTP/2.0x"),
        Err(RequestError::BadRequest(_))
    ));
    // Found by fuzzing: a refused partial version stays refused when a
    // space follows it, and the version token is the one after the second
    // space, not the last.
    for refused_prefix in [&b"GET /a \xa0"[..], b"GET /a \xa0 ", b"GET /a HTTP/2.0 "] {
        assert!(
            matches!(parse(refused_prefix), Err(RequestError::BadRequest(_))),
            "{refused_prefix:?}"
        );
    }
    assert!(matches!(parse(b"GET /a "), Ok(Parse::Partial)));
}

#[test]
fn host_rules() {
    let ok: &[(&[u8], Option<&str>)] = &[
        (
            b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
            Some("example.com:8080"),
        ),
        (
            b"GET / HTTP/1.1\r\nhost: [::1]:80\r\n\r\n",
            Some("[::1]:80"),
        ),
        // RFC 9112 §3.2: an empty Host is sent for an empty authority.
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", None),
        (b"GET / HTTP/1.0\r\n\r\n", None),
        (b"GET / HTTP/1.0\r\nHost: h\r\n\r\n", Some("h")),
        // Absolute-form authority wins over Host (RFC 9112 §3.2.2).
        (
            b"GET http://Target:81/p HTTP/1.1\r\nHost: other\r\n\r\n",
            Some("target:81"),
        ),
        (b"GET http://target/p HTTP/1.0\r\n\r\n", Some("target")),
    ];
    for &(input, want) in ok {
        assert_eq!(
            complete(input).host.as_deref(),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bad: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\xc3\xa9\r\n\r\n",
        // Absolute-form still needs a valid Host in HTTP/1.1.
        b"GET http://target/p HTTP/1.1\r\n\r\n",
        b"GET http://target/p HTTP/1.1\r\nHost: a b\r\n\r\n",
    ];
    for &input in bad {
        assert!(
            matches!(parse(input), Err(RequestError::BadRequest(_))),
            "{:?}: {:?}",
            String::from_utf8_lossy(input),
            parse(input)
        );
    }
}

#[test]
fn host_field_list_with_comma_is_invalid() {
    // `a,b` is a valid reg-name character set (sub-delims), so it passes the
    // grammar; what makes several hosts invalid is two Host lines.
    assert_eq!(
        complete(b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n")
            .host
            .as_deref(),
        Some("a,b")
    );
}

#[test]
fn target_forms() {
    type Want = Result<(&'static str, Option<&'static str>), RequestError>;
    let cases: &[(&[u8], Want)] = &[
        (
            b"GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n",
            Ok(("/p", Some("q"))),
        ),
        (b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", Ok(("/p", Some("")))),
        (
            b"GET //double HTTP/1.1\r\nHost: h\r\n\r\n",
            Ok(("//double", None)),
        ),
        (
            b"GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n",
            Ok(("/a", Some("b?c"))),
        ),
        (
            b"GET http://h:8080/p?q HTTP/1.1\r\nHost: h\r\n\r\n",
            Ok(("/p", Some("q"))),
        ),
        (b"GET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n", Ok(("/", None))),
        (
            b"GET https://h?q HTTP/1.1\r\nHost: h\r\n\r\n",
            Ok(("/", Some("q"))),
        ),
        (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Ok(("*", None))),
        (
            b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest(
                "asterisk-form target without OPTIONS",
            )),
        ),
        (
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            Err(RequestError::NotImplemented("CONNECT")),
        ),
        (
            b"CONNECT /p HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest(
                "CONNECT without authority-form target",
            )),
        ),
        (
            b"GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest("invalid request-target")),
        ),
        (
            b"GET p HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest("invalid request-target")),
        ),
        (
            b"GET ftp://h/p HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest(
                "request-target scheme is not http or https",
            )),
        ),
        (
            b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest(
                "empty authority in request-target",
            )),
        ),
        (
            b"GET http://u@h/p HTTP/1.1\r\nHost: h\r\n\r\n",
            Err(RequestError::BadRequest("invalid host")),
        ),
    ];
    for &(input, want) in cases {
        let got = match parse(input) {
            Ok(Parse::Complete(head, _)) => Ok(head),
            Ok(Parse::Partial) => panic!("{input:?}: Partial"),
            Err(err) => Err(err),
        };
        let got = got.map(|h| (h.path, h.query));
        let want = want.map(|(p, q)| (p.to_owned(), q.map(str::to_owned)));
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn content_length() {
    let cases: &[(&str, Result<BodyKind, RequestError>)] = &[
        ("Content-Length: 0", Ok(BodyKind::Length(0))),
        ("Content-Length: 42", Ok(BodyKind::Length(42))),
        ("content-length:  007 ", Ok(BodyKind::Length(7))),
        (
            "Content-Length: 18446744073709551615",
            Ok(BodyKind::Length(u64::MAX)),
        ),
        (
            "Content-Length: 5\r\nContent-Length: 5",
            Ok(BodyKind::Length(5)),
        ),
        ("Content-Length: 5, 5", Ok(BodyKind::Length(5))),
        (
            "Content-Length: 5,5\r\ncontent-length: 5",
            Ok(BodyKind::Length(5)),
        ),
        (
            "Content-Length: 18446744073709551616",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length: +5",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length: -5",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length: 0x5",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length: 5 5",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length:",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length: 5,",
            Err(RequestError::BadRequest("invalid Content-Length")),
        ),
        (
            "Content-Length: 5, 6",
            Err(RequestError::BadRequest(
                "conflicting Content-Length values",
            )),
        ),
        (
            "Content-Length: 5\r\nContent-Length: 6",
            Err(RequestError::BadRequest(
                "conflicting Content-Length values",
            )),
        ),
    ];
    for &(fields, want) in cases {
        let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n\r\n");
        let got = match parse(input.as_bytes()) {
            Ok(Parse::Complete(head, _)) => Ok(head.body),
            Ok(Parse::Partial) => panic!("{fields:?}: Partial"),
            Err(err) => Err(err),
        };
        assert_eq!(got, want, "{fields:?}");
    }
}

#[test]
fn transfer_encoding() {
    let bad_final = Err(RequestError::BadRequest(
        "chunked is not the final transfer coding",
    ));
    let cases: &[(&str, &str, Result<BodyKind, RequestError>)] = &[
        ("1.1", "Transfer-Encoding: chunked", Ok(BodyKind::Chunked)),
        ("1.1", "Transfer-Encoding: CHUNKED", Ok(BodyKind::Chunked)),
        ("1.1", "transfer-encoding: Chunked ,", Ok(BodyKind::Chunked)),
        (
            "1.1",
            "Transfer-Encoding: gzip, chunked",
            Err(RequestError::NotImplemented(
                "transfer coding other than chunked",
            )),
        ),
        (
            "1.1",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            Err(RequestError::NotImplemented(
                "transfer coding other than chunked",
            )),
        ),
        (
            "1.1",
            "Transfer-Encoding: x-custom;q=1, chunked",
            Err(RequestError::NotImplemented(
                "transfer coding other than chunked",
            )),
        ),
        ("1.1", "Transfer-Encoding: chunked, gzip", bad_final),
        ("1.1", "Transfer-Encoding: gzip", bad_final),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
            bad_final,
        ),
        ("1.1", "Transfer-Encoding:", bad_final),
        (
            "1.1",
            "Transfer-Encoding: chunked, chunked",
            Err(RequestError::BadRequest("chunked applied more than once")),
        ),
        (
            "1.1",
            "Transfer-Encoding: chunked;a=b",
            Err(RequestError::BadRequest("parameters on chunked")),
        ),
        (
            "1.1",
            "Transfer-Encoding: chun ked",
            Err(RequestError::BadRequest("invalid transfer coding")),
        ),
        (
            "1.1",
            "Transfer-Encoding: \"chunked\"",
            Err(RequestError::BadRequest("invalid transfer coding")),
        ),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nContent-Length: 5",
            Err(RequestError::BadRequest(
                "both Transfer-Encoding and Content-Length",
            )),
        ),
        (
            "1.1",
            "Content-Length: 5\r\nTransfer-Encoding: chunked",
            Err(RequestError::BadRequest(
                "both Transfer-Encoding and Content-Length",
            )),
        ),
        (
            "1.0",
            "Transfer-Encoding: chunked",
            Err(RequestError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
        ),
        (
            "1.0",
            "Transfer-Encoding: chunked\r\nContent-Length: 5",
            Err(RequestError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
        ),
    ];
    for &(version, fields, want) in cases {
        let input = format!("POST / HTTP/{version}\r\nHost: h\r\n{fields}\r\n\r\n");
        let got = match parse(input.as_bytes()) {
            Ok(Parse::Complete(head, _)) => Ok(head.body),
            Ok(Parse::Partial) => panic!("{fields:?}: Partial"),
            Err(err) => Err(err),
        };
        assert_eq!(got, want, "{version} {fields:?}");
    }
}

#[test]
fn expect() {
    let cases: &[(&str, &str, Result<bool, RequestError>)] = &[
        ("1.1", "Expect: 100-continue", Ok(true)),
        ("1.1", "Expect: 100-Continue", Ok(true)),
        ("1.1", "Expect:", Ok(false)),
        ("1.1", "X-Other: 1", Ok(false)),
        // RFC 9110 §10.1.1: ignored in HTTP/1.0.
        ("1.0", "Expect: 100-continue", Ok(false)),
        (
            "1.1",
            "Expect: 200-ok",
            Err(RequestError::ExpectationFailed),
        ),
        (
            "1.1",
            "Expect: 100-continue, foo",
            Err(RequestError::ExpectationFailed),
        ),
        (
            "1.1",
            "Expect: 100-continue;x=y",
            Err(RequestError::ExpectationFailed),
        ),
        ("1.0", "Expect: foo", Err(RequestError::ExpectationFailed)),
    ];
    for &(version, fields, want) in cases {
        let input =
            format!("PUT /f HTTP/{version}\r\nHost: h\r\nContent-Length: 1\r\n{fields}\r\n\r\n");
        let got = match parse(input.as_bytes()) {
            Ok(Parse::Complete(head, _)) => Ok(head.expect_continue),
            Ok(Parse::Partial) => panic!("{fields:?}: Partial"),
            Err(err) => Err(err),
        };
        assert_eq!(got, want, "{version} {fields:?}");
    }
}

#[test]
fn keep_alive() {
    let cases: &[(&str, &str, bool)] = &[
        ("1.1", "", true),
        ("1.1", "Connection: close\r\n", false),
        ("1.1", "Connection: CLOSE\r\n", false),
        ("1.1", "Connection: Upgrade, close\r\n", false),
        ("1.1", "Connection: keep-alive\r\n", true),
        (
            "1.1",
            "Connection: keep-alive\r\nConnection: close\r\n",
            false,
        ),
        ("1.1", "Connection: closed\r\n", true),
        ("1.0", "", false),
        ("1.0", "Connection: keep-alive\r\n", true),
        ("1.0", "Connection: Keep-Alive\r\n", true),
        ("1.0", "Connection: foo ,  keep-alive\r\n", true),
        ("1.0", "Connection: keep-alive, close\r\n", false),
        ("1.0", "Connection: keep-alive-ish\r\n", false),
    ];
    for &(version, fields, want) in cases {
        let input = format!("GET / HTTP/{version}\r\nHost: h\r\n{fields}\r\n");
        assert_eq!(
            complete(input.as_bytes()).keep_alive,
            want,
            "{version} {fields:?}"
        );
    }
}

#[test]
fn connection_upgrade_option() {
    let cases: &[(&str, bool)] = &[
        ("", false),
        ("Upgrade: h2c\r\n", false),
        ("Connection: Upgrade\r\n", true),
        ("Connection: keep-alive, UPGRADE\r\n", true),
        (
            "Connection: close\r\nConnection: upgrade, HTTP2-Settings\r\n",
            true,
        ),
        ("Connection: upgraded\r\n", false),
    ];
    for &(fields, want) in cases {
        let input = format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        assert_eq!(
            complete(input.as_bytes()).connection_upgrade,
            want,
            "{fields:?}"
        );
    }
}

#[test]
fn request_line_limit() {
    // 64 bytes of request line are fine, 65 are not, with or without CR.
    let at_limit = format!("GET /{} HTTP/1.1", "a".repeat(64 - 14));
    assert_eq!(at_limit.len(), 64);
    complete(format!("{at_limit}\r\nHost: h\r\n\r\n").as_bytes());
    complete(format!("{at_limit}\nHost: h\n\n").as_bytes());
    let over = format!("GET /{} HTTP/1.1", "a".repeat(65 - 14));
    refused(
        format!("{over}\r\nHost: h\r\n\r\n").as_bytes(),
        RequestError::UriTooLong,
    );
    refused(
        format!("{over}\nHost: h\n\n").as_bytes(),
        RequestError::UriTooLong,
    );
    // Detected on a partial line as soon as it cannot fit any more.
    let long_target = format!("GET /{}", "a".repeat(100));
    for len in 0..long_target.len() {
        let got = parse(&long_target.as_bytes()[..len]);
        if len <= 64 {
            assert!(matches!(got, Ok(Parse::Partial)), "{len}: {got:?}");
        } else if len == 65 {
            // 65 bytes: the last one is not CR, so the line is already too long.
            assert_eq!(got.err(), Some(RequestError::UriTooLong), "{len}");
        } else {
            assert_eq!(got.err(), Some(RequestError::UriTooLong), "{len}");
        }
    }
    // A CR at position 65 may still be the end of a 64-byte line.
    assert!(matches!(
        parse(format!("{at_limit}\r").as_bytes()),
        Ok(Parse::Partial)
    ));
}

#[test]
fn header_section_limits() {
    // The header section may be 128 bytes, empty line included.
    let field = |n: usize| format!("X-Pad: {}\r\n", "p".repeat(n - 9));
    let host = "Host: h\r\n";
    let at_limit = format!(
        "GET / HTTP/1.1\r\n{host}{}\r\n",
        field(128 - host.len() - 2)
    );
    assert_eq!(at_limit.len(), 16 + 128);
    complete(at_limit.as_bytes());
    let over = format!(
        "GET / HTTP/1.1\r\n{host}{}\r\n",
        field(128 - host.len() - 1)
    );
    refused(over.as_bytes(), RequestError::HeaderFieldsTooLarge);
    // Detected on a partial head that already holds too much.
    let partial = format!("GET / HTTP/1.1\r\n{host}{}", "X-A: b\r\n".repeat(20));
    assert_eq!(
        parse(partial.as_bytes()).err(),
        Some(RequestError::HeaderFieldsTooLarge)
    );
    // Too many fields, whole or partial.
    let many = format!("GET / HTTP/1.1\r\n{host}{}\r\n", "A: b\r\n".repeat(8));
    refused(many.as_bytes(), RequestError::HeaderFieldsTooLarge);
    let exactly = format!("GET / HTTP/1.1\r\n{host}{}\r\n", "A: b\r\n".repeat(7));
    assert_eq!(
        complete(exactly.as_bytes())
            .headers
            .get_all("a")
            .iter()
            .count(),
        7
    );
}

#[test]
fn partial_never_exceeds_max_head_len() {
    // Whatever a peer sends, once the buffer is longer than max_head_len the
    // answer is a decision.
    let inputs: Vec<Vec<u8>> = vec![
        b"\r\n".repeat(100),
        format!("GET /{}", "a".repeat(300)).into_bytes(),
        format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(100)).into_bytes(),
        format!("GET / HTTP/1.1\r\nX: {}", "y".repeat(300)).into_bytes(),
        format!(
            "\r\n\r\nGET /{} HTTP/1.1\r\nX: {}",
            "a".repeat(50),
            "y".repeat(300)
        )
        .into_bytes(),
    ];
    for input in inputs {
        for len in 0..=input.len() {
            if let Ok(Parse::Partial) = parse(&input[..len]) {
                assert!(len <= LIMITS.max_head_len(), "Partial for {len} bytes");
            }
        }
    }
}

#[test]
fn many_header_slots_use_the_heap() {
    let limits = H1Limits {
        max_request_line: 64,
        max_header_bytes: 64 * 1024,
        max_headers: 500,
    };
    let input = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        "A: b\r\n".repeat(300)
    );
    match parse_request_head(input.as_bytes(), &limits) {
        Ok(Parse::Complete(head, used)) => {
            assert_eq!(used, input.len());
            assert_eq!(head.headers.len(), 301);
        }
        other => panic!("{other:?}"),
    }
    let too_many = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        "A: b\r\n".repeat(500)
    );
    assert_eq!(
        parse_request_head(too_many.as_bytes(), &limits).err(),
        Some(RequestError::HeaderFieldsTooLarge)
    );
}

#[test]
fn methods() {
    for (raw, want) in [
        ("GET", Method::GET),
        ("POST", Method::POST),
        ("DELETE", Method::DELETE),
    ] {
        let input = format!("{raw} / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(complete(input.as_bytes()).method, want);
    }
    let head = complete(b"PROPFIND / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(head.method.as_str(), "PROPFIND");
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is an extension method.
    assert_eq!(
        complete(b"get / HTTP/1.1\r\nHost: h\r\n\r\n")
            .method
            .as_str(),
        "get"
    );
}

#[test]
fn statuses() {
    let cases = [
        (RequestError::BadRequest("x"), 400),
        (RequestError::UriTooLong, 414),
        (RequestError::HeaderFieldsTooLarge, 431),
        (RequestError::ExpectationFailed, 417),
        (RequestError::NotImplemented("x"), 501),
        (RequestError::VersionNotSupported, 505),
    ];
    for (err, want) in cases {
        assert_eq!(err.status().as_u16(), want, "{err}");
    }
}

#[test]
fn headers_keep_order_and_repeats() {
    let head = complete(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nX-Y: 1\r\nx-y: 2\r\n\r\n");
    let values: Vec<_> = head
        .headers
        .get_all("x-y")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    assert_eq!(values, [&b"1"[..], b"2"]);
    assert_eq!(head.headers.len(), 4);
}

#[test]
fn a_connection_host_memo_never_changes_an_outcome() {
    // One connection's requests in a row: a memo primed by earlier Host fields (equal, differing
    // in case, invalid, absent) must answer exactly as a fresh parse does.
    let heads: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET http://Other.ORG/x HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        b"GET http://other.org/x HTTP/1.1\r\nHost: bad host\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: example.com:99999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
    ];
    let mut memo = HostMemo::default();
    for &input in heads {
        let fresh = parse(input);
        let remembered = parse_request_head_with(input, &LIMITS, &mut memo);
        match (fresh, remembered) {
            (Ok(Parse::Complete(a, used_a)), Ok(Parse::Complete(b, used_b))) => {
                assert_eq!((a.host, used_a), (b.host, used_b), "{input:?}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{input:?}"),
            (a, b) => panic!("{input:?}: fresh {a:?}, with memo {b:?}"),
        }
    }
}

/// A buffer within both limits goes to httparse at once; one longer than
/// they are is scanned for its line ends first. A head followed by more
/// bytes (the next pipelined request) takes the second way: either way it
/// must come out the same, to the byte it ends at.
#[test]
fn a_head_parses_alike_with_and_without_the_line_scan() {
    let heads: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /x?y HTTP/1.0\n\n",
        b"\r\nGET / HTTP/1.1\nHost: a\n\n",
        b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    ];
    for head in heads {
        assert!(
            head.len() <= LIMITS.max_request_line,
            "{head:?} must take the short way"
        );
        let alone = format!("{:?}", parse(head));
        let mut followed = head.to_vec();
        followed.extend_from_slice(&[b'x'; 200]);
        assert!(followed.len() > LIMITS.max_header_bytes);
        let scanned = format!("{:?}", parse(&followed));
        assert_eq!(alone, scanned, "{:?}", String::from_utf8_lossy(head));
    }
}
