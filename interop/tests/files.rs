//! The files service (RFC 9110 GET/HEAD, validators, conditionals, ranges; directories;
//! precompressed siblings; never serving outside the root), shown with curl and raw sockets.

use std::time::{Duration, SystemTime};

use switchyard_interop::{
    Conn, CurlOutput, Response, Server, WebRoot, config, curl, curl_to, get, get_close,
    pseudo_random, sha256, sha256_file,
};

const HELLO: &[u8] = b"hello world\n";
const SECRET: &str = "TOPSECRET-outside-the-root";

/// 1000 bytes: "0123456789" a hundred times, so any range is easy to check.
fn digits() -> Vec<u8> {
    b"0123456789".repeat(100)
}

/// The common site. The directory holding the root also holds `secret.txt`, which must never be
/// served except through a symlink under `symlinks = "follow"`.
fn site() -> WebRoot {
    let www = WebRoot::new();
    std::fs::write(www.outside().join("secret.txt"), SECRET).expect("write secret");
    std::fs::create_dir_all(www.outside().join("secret-dir")).expect("secret dir");
    std::fs::write(www.outside().join("secret-dir/secret.txt"), SECRET).expect("write secret");
    www.file("hello.txt", HELLO)
        .file("hello world.txt", "spaced\n")
        .file("digits.txt", digits())
        .file("page.html", "<p>page</p>")
        .file("style.css", "p{}")
        .file("data.json", "{}")
        .file("image.png", b"\x89PNG\r\n\x1a\n")
        .file("docs/index.html", "<h1>docs</h1>")
        .file("list/a.txt", "a")
        .file("list/b.txt", "bb")
        .file("list/<b>&x.txt", "tricky")
        .file("list/q\"x'.txt", "quote")
        .file("list/.hidden", "hidden")
        .dir("list/sub")
        .file("%2e%2e/x.txt", "literal percent dir\n")
        .file(".env", "DOTENV")
        .file(".git/config", "GITCONFIG")
        .file("sub/.hidden", "HIDDEN")
        .file("app.js", "console.log('identity')")
        .file("app.js.gz", "GZ-BYTES")
        .file("app.js.br", "BR-BYTES!")
        .file("app.js.zst", "ZST-BYTES!!")
        .file("only.css", "p{color:red}")
        .file("only.css.gz", "ONLY-GZ")
        .symlink("hello.txt", "inside-link.txt")
        .symlink("docs", "alias")
        .symlink(www.outside().join("secret.txt"), "outside-link.txt")
        .symlink(www.outside().join("secret-dir"), "outside-dir");
    www
}

fn serve(www: &WebRoot) -> Server {
    Server::serve(www.root()).start()
}

/// A config-file server for `www` with `location` lines added to the location table.
fn serve_location(www: &WebRoot, location: &str) -> Server {
    Server::run_config(&config(www.root(), location, "")).start()
}

/// `curl URL -H h...` against `server`.
fn fetch(server: &Server, path: &str, headers: &[&str]) -> CurlOutput {
    let mut args = vec![server.url(path)];
    for h in headers {
        args.push("-H".to_owned());
        args.push((*h).to_owned());
    }
    let out = curl(&args);
    assert_eq!(out.exit, 0, "curl {path} failed: {}", out.stderr);
    out
}

/// A raw `GET target` (sent byte-exact, no client normalisation) on a fresh connection.
fn raw_get(server: &Server, target: &str) -> Response {
    let mut conn = server.connect();
    conn.send(get_close(target).as_bytes());
    conn.read_response()
}

// ---- GET, HEAD, methods -----------------------------------------------------------------------

#[test]
fn get_serves_file_bytes_with_length_and_type() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/hello.txt", &[]);
    assert_eq!(out.status, 200);
    assert_eq!(out.body, HELLO);
    assert_eq!(out.header("content-length"), Some("12"));
    assert!(
        out.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        out.headers
    );
}

#[test]
fn content_type_comes_from_the_extension() {
    let www = site();
    let server = serve(&www);
    for (path, want) in [
        ("/page.html", "text/html"),
        ("/style.css", "text/css"),
        ("/data.json", "application/json"),
        ("/image.png", "image/png"),
        ("/app.js", "javascript"),
    ] {
        let out = fetch(&server, path, &[]);
        let got = out.header("content-type").unwrap_or("");
        assert!(
            got.contains(want),
            "{path}: Content-Type {got:?}, want {want}"
        );
    }
}

#[test]
fn missing_file_is_404() {
    let www = site();
    let server = serve(&www);
    assert_eq!(fetch(&server, "/nope.txt", &[]).status, 404);
    assert_eq!(fetch(&server, "/docs/nope/deeper.txt", &[]).status, 404);
}

#[test]
fn query_string_is_not_part_of_the_file_name() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/hello.txt?v=1&x=%2e%2e", &[]);
    assert_eq!((out.status, out.body.as_slice()), (200, HELLO));
}

#[test]
fn percent_encoded_name_is_decoded() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/hello%20world.txt", &[]);
    assert_eq!((out.status, out.text().as_str()), (200, "spaced\n"));
}

#[test]
fn percent_decoding_happens_exactly_once() {
    let www = site();
    let server = serve(&www);
    // `%252e%252e` decodes once to the literal segment `%2e%2e`, a directory in the root.
    let resp = raw_get(&server, "/%252e%252e/x.txt");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "literal percent dir\n")
    );
    let resp = raw_get(&server, "/%252e%252e/secret.txt");
    assert_eq!(resp.status, 404, "{resp:?}");
    assert!(!resp.text().contains(SECRET));
}

#[test]
fn head_has_content_length_and_no_body() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    // HEAD then GET on one connection: if HEAD carried a body, the GET's response would be garbled.
    conn.send(b"HEAD /digits.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert!(head.header("etag").is_some() && head.header("last-modified").is_some());
    conn.send(get_close("/hello.txt").as_bytes());
    let resp = conn.read_response();
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, HELLO),
        "HEAD sent a body"
    );
}

#[test]
fn other_methods_are_405_with_allow() {
    let www = site();
    let server = serve(&www);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let mut conn = server.connect();
        conn.send(
            format!("{method} /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        let resp = conn.read_response();
        assert_eq!(resp.status, 405, "{method}: {resp:?}");
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: 405 without Allow"));
        for m in ["GET", "HEAD"] {
            assert!(
                allow.split(',').any(|a| a.trim() == m),
                "{method}: Allow {allow:?} lacks {m}"
            );
        }
    }
    server.assert_serves("/hello.txt", HELLO);
}

// ---- validators and conditional requests (RFC 9110 §8.8, §13) ----------------------------------

/// ETag and Last-Modified of `path`.
fn validators(server: &Server, path: &str) -> (String, String) {
    let out = fetch(server, path, &[]);
    let etag = out.header("etag").expect("ETag").to_owned();
    let lm = out
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    (etag, lm)
}

const PAST: &str = "Sat, 01 Jan 2000 00:00:00 GMT";
const FUTURE: &str = "Fri, 01 Jan 2100 00:00:00 GMT";

#[test]
fn etag_and_last_modified_are_sent() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/hello.txt", &[]);
    let etag = out.header("etag").expect("ETag");
    assert!(
        etag.ends_with('"') && (etag.starts_with('"') || etag.starts_with("W/\"")),
        "bad ETag {etag}"
    );
    let lm = out.header("last-modified").expect("Last-Modified");
    assert!(lm.ends_with(" GMT"), "Last-Modified not an HTTP-date: {lm}");
    assert_eq!(out.header("accept-ranges"), Some("bytes"));
}

#[test]
fn changed_file_is_served_fresh_when_revalidate_is_0s() {
    let www = site();
    let server = Server::run_config(&config(
        www.root(),
        "",
        "[timeouts]\nfile_revalidate = \"0s\"\n",
    ))
    .start();
    let (before, _) = validators(&server, "/hello.txt");
    www.file("hello.txt", "changed and longer\n");
    let out = fetch(&server, "/hello.txt", &[]);
    assert_eq!(
        out.text(),
        "changed and longer\n",
        "stale bytes with file_revalidate = 0s"
    );
    assert_ne!(out.header("etag"), Some(before.as_str()));
}

#[test]
fn changed_file_is_seen_within_the_revalidate_window() {
    let www = site();
    let server = serve(&www); // file_revalidate defaults to 1s
    let (before, _) = validators(&server, "/hello.txt");
    www.file("hello.txt", "changed and longer\n");
    let changed_at = std::time::Instant::now();
    // Poll (bounded) until the new bytes are served; every answer meanwhile is whole and
    // self-consistent: the old bytes with the old ETag, or the new bytes with a new one.
    loop {
        let out = fetch(&server, "/hello.txt", &[]);
        let etag = out.header("etag").unwrap_or_default();
        if out.body == HELLO {
            assert_eq!(etag, before, "old bytes with a new ETag");
        } else {
            assert_eq!(out.text(), "changed and longer\n");
            assert_ne!(etag, before, "new bytes with the old ETag");
            break;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(3),
            "still serving the old file 3 s after it changed (file_revalidate = 1s)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn if_none_match_with_current_etag_is_304() {
    let www = site();
    let server = serve(&www);
    let (etag, _) = validators(&server, "/hello.txt");
    let weak = format!("W/{}", etag.trim_start_matches("W/"));
    for value in [
        etag.clone(),
        format!("\"other\", {etag}"),
        "*".to_owned(),
        weak,
    ] {
        let out = fetch(&server, "/hello.txt", &[&format!("If-None-Match: {value}")]);
        assert_eq!(out.status, 304, "If-None-Match: {value}");
        assert!(out.body.is_empty(), "304 with a body");
        assert_eq!(
            out.header("etag"),
            Some(etag.as_str()),
            "304 must repeat the ETag"
        );
    }
}

#[test]
fn if_none_match_with_other_etag_is_200() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/hello.txt", &["If-None-Match: \"not-it\""]);
    assert_eq!((out.status, out.body.as_slice()), (200, HELLO));
}

#[test]
fn head_with_matching_if_none_match_is_304() {
    let www = site();
    let server = serve(&www);
    let (etag, _) = validators(&server, "/hello.txt");
    let mut conn = server.connect();
    conn.send(
        format!("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    assert_eq!(conn.read_head_response().status, 304);
}

#[test]
fn if_modified_since_not_modified_is_304() {
    let www = site();
    let server = serve(&www);
    let (_, lm) = validators(&server, "/hello.txt");
    let out = fetch(
        &server,
        "/hello.txt",
        &[&format!("If-Modified-Since: {lm}")],
    );
    assert_eq!(out.status, 304);
    assert!(out.body.is_empty());
    let out = fetch(
        &server,
        "/hello.txt",
        &[&format!("If-Modified-Since: {FUTURE}")],
    );
    assert_eq!(out.status, 304);
}

#[test]
fn if_modified_since_before_change_is_200() {
    let www = site();
    let server = serve(&www);
    let out = fetch(
        &server,
        "/hello.txt",
        &[&format!("If-Modified-Since: {PAST}")],
    );
    assert_eq!((out.status, out.body.as_slice()), (200, HELLO));
    // An invalid date is ignored (RFC 9110 §13.1.3).
    let out = fetch(&server, "/hello.txt", &["If-Modified-Since: yesterday-ish"]);
    assert_eq!(out.status, 200);
}

#[test]
fn if_none_match_takes_precedence_over_if_modified_since() {
    let www = site();
    let server = serve(&www);
    let out = fetch(
        &server,
        "/hello.txt",
        &[
            "If-None-Match: \"not-it\"",
            &format!("If-Modified-Since: {FUTURE}"),
        ],
    );
    assert_eq!(
        out.status, 200,
        "If-Modified-Since must be ignored when If-None-Match is present"
    );
}

#[test]
fn if_match_with_other_etag_is_412() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/hello.txt", &["If-Match: \"not-it\""]);
    assert_eq!(out.status, 412);
    // If-Match uses the strong comparison: a weak tag never matches.
    let (etag, _) = validators(&server, "/hello.txt");
    let weak = format!("W/{}", etag.trim_start_matches("W/"));
    let out = fetch(&server, "/hello.txt", &[&format!("If-Match: {weak}")]);
    assert_eq!(out.status, 412, "If-Match: {weak} (weak) must not match");
}

#[test]
fn if_match_with_current_etag_or_star_is_200() {
    let www = site();
    let server = serve(&www);
    let (etag, _) = validators(&server, "/hello.txt");
    for value in [etag.clone(), format!("\"x\", {etag}"), "*".to_owned()] {
        let out = fetch(&server, "/hello.txt", &[&format!("If-Match: {value}")]);
        assert_eq!(
            (out.status, out.body.as_slice()),
            (200, HELLO),
            "If-Match: {value}"
        );
    }
}

#[test]
fn if_unmodified_since_before_change_is_412() {
    let www = site();
    let server = serve(&www);
    let out = fetch(
        &server,
        "/hello.txt",
        &[&format!("If-Unmodified-Since: {PAST}")],
    );
    assert_eq!(out.status, 412);
    let (_, lm) = validators(&server, "/hello.txt");
    let out = fetch(
        &server,
        "/hello.txt",
        &[&format!("If-Unmodified-Since: {lm}")],
    );
    assert_eq!(out.status, 200);
    // RFC 9110 §5.6.7: the grammar does not tie the day name to the date, and a recipient
    // must accept the date (1 January 1990 was a Monday).
    let out = fetch(
        &server,
        "/hello.txt",
        &["If-Unmodified-Since: Fri, 01 Jan 1990 00:00:00 GMT"],
    );
    assert_eq!(
        out.status, 412,
        "a date with the wrong day name was ignored"
    );
}

#[test]
fn if_match_takes_precedence_over_if_unmodified_since() {
    let www = site();
    let server = serve(&www);
    let (etag, _) = validators(&server, "/hello.txt");
    let out = fetch(
        &server,
        "/hello.txt",
        &[
            &format!("If-Match: {etag}"),
            &format!("If-Unmodified-Since: {PAST}"),
        ],
    );
    assert_eq!(
        out.status, 200,
        "If-Unmodified-Since must be ignored when If-Match is present"
    );
}

#[test]
fn if_match_failure_wins_over_if_none_match() {
    let www = site();
    let server = serve(&www);
    // RFC 9110 §13.2.2: step 1 (If-Match) is evaluated before step 3 (If-None-Match).
    let out = fetch(
        &server,
        "/hello.txt",
        &["If-Match: \"not-it\"", "If-None-Match: *"],
    );
    assert_eq!(out.status, 412);
}

// ---- ranges (RFC 9110 §14) ------------------------------------------------------------------

#[test]
fn single_range_is_206_with_content_range() {
    let www = site();
    let server = serve(&www);
    let d = digits();
    for (spec, first, last) in [
        ("0-9", 0, 9),
        ("990-", 990, 999),
        ("-10", 990, 999),
        ("995-2000", 995, 999),
        ("5-5", 5, 5),
    ] {
        let out = fetch(&server, "/digits.txt", &[&format!("Range: bytes={spec}")]);
        assert_eq!(out.status, 206, "bytes={spec}");
        assert_eq!(
            out.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "bytes={spec}"
        );
        assert_eq!(out.body, &d[first..=last], "bytes={spec}");
        assert_eq!(
            out.header("content-length"),
            Some((last - first + 1).to_string().as_str())
        );
    }
}

/// The parts of a multipart/byteranges body: (Content-Range, bytes).
fn byteranges(out: &CurlOutput) -> Vec<(String, Vec<u8>)> {
    let ct = out.header("content-type").expect("Content-Type");
    assert!(ct.starts_with("multipart/byteranges"), "Content-Type {ct}");
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary parameter")
        .trim_matches('"')
        .to_owned();
    let delim = format!("--{boundary}").into_bytes();
    let body = &out.body;
    let mut starts = Vec::new();
    let mut i = 0;
    while i + delim.len() <= body.len() {
        if body[i..].starts_with(&delim) {
            starts.push(i);
            i += delim.len();
        } else {
            i += 1;
        }
    }
    assert!(
        starts.len() >= 2,
        "no multipart delimiters in {:?}",
        out.text()
    );
    let close = *starts.last().expect("closing delimiter");
    assert!(
        body[close + delim.len()..].starts_with(b"--"),
        "missing closing delimiter"
    );
    starts
        .windows(2)
        .map(|w| {
            let part = &body[w[0] + delim.len()..w[1]];
            let part = part.strip_prefix(b"\r\n").expect("CRLF after delimiter");
            let part = part.strip_suffix(b"\r\n").expect("CRLF before delimiter");
            let split = part
                .windows(4)
                .position(|x| x == b"\r\n\r\n")
                .expect("part head");
            let head = String::from_utf8_lossy(&part[..split]).into_owned();
            let range = head
                .split("\r\n")
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-range")
                        .then(|| v.trim().to_owned())
                })
                .expect("Content-Range in part");
            (range, part[split + 4..].to_vec())
        })
        .collect()
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    let www = site();
    let server = serve(&www);
    let d = digits();
    let out = fetch(&server, "/digits.txt", &["Range: bytes=0-4,100-109,-3"]);
    assert_eq!(out.status, 206);
    let parts = byteranges(&out);
    let want = [
        ("bytes 0-4/1000", 0, 4),
        ("bytes 100-109/1000", 100, 109),
        ("bytes 997-999/1000", 997, 999),
    ];
    assert_eq!(parts.len(), want.len(), "{parts:?}");
    for ((range, bytes), (want_range, first, last)) in parts.iter().zip(want) {
        assert_eq!(range, want_range);
        assert_eq!(bytes.as_slice(), &d[first..=last]);
    }
    assert_eq!(
        out.header("content-length").map(str::parse::<usize>),
        Some(Ok(out.body.len()))
    );
}

#[test]
fn too_many_ranges_is_200_full() {
    let www = site();
    let server = serve(&www);
    let many: Vec<String> = (0..20)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let out = fetch(
        &server,
        "/digits.txt",
        &[&format!("Range: bytes={}", many.join(","))],
    );
    assert_eq!(
        out.status, 200,
        "20 ranges (limit 16) must get the whole file"
    );
    assert_eq!(out.body, digits());
}

#[test]
fn overlapping_ranges_do_not_amplify_the_response() {
    let www = site();
    let server = serve(&www);
    let overlapping = ["0-"; 10].join(",");
    let out = fetch(
        &server,
        "/digits.txt",
        &[&format!("Range: bytes={overlapping}")],
    );
    assert!(matches!(out.status, 200 | 206), "{}", out.status);
    assert!(
        out.body.len() < 2000,
        "10 overlapping whole-file ranges produced {} bytes",
        out.body.len()
    );
}

#[test]
fn unsatisfiable_range_is_416_with_content_range() {
    let www = site();
    let server = serve(&www);
    for spec in ["1000-", "5000-6000", "1000-1000"] {
        let out = fetch(&server, "/digits.txt", &[&format!("Range: bytes={spec}")]);
        assert_eq!(out.status, 416, "bytes={spec}");
        assert_eq!(
            out.header("content-range"),
            Some("bytes */1000"),
            "bytes={spec}"
        );
    }
}

#[test]
fn invalid_range_header_is_ignored() {
    let www = site();
    let server = serve(&www);
    for value in ["bytes=abc", "items=0-5", "bytes=5-1", "bytes="] {
        let out = fetch(&server, "/digits.txt", &[&format!("Range: {value}")]);
        assert_eq!(out.status, 200, "Range: {value}");
        assert_eq!(out.body.len(), 1000);
    }
}

#[test]
fn if_range_with_current_etag_gives_206_and_stale_gives_200() {
    let www = site();
    let server = serve(&www);
    let (etag, _) = validators(&server, "/digits.txt");
    let out = fetch(
        &server,
        "/digits.txt",
        &["Range: bytes=0-9", &format!("If-Range: {etag}")],
    );
    assert_eq!(out.status, 206);
    let out = fetch(
        &server,
        "/digits.txt",
        &["Range: bytes=0-9", "If-Range: \"stale\""],
    );
    assert_eq!((out.status, out.body.len()), (200, 1000));
}

#[test]
fn if_range_with_last_modified_date() {
    let www = site();
    www.set_mtime(
        "digits.txt",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800),
    ); // 2020-01-01
    let server = serve(&www);
    let (_, lm) = validators(&server, "/digits.txt");
    assert_eq!(lm, "Wed, 01 Jan 2020 00:00:00 GMT");
    let out = fetch(
        &server,
        "/digits.txt",
        &["Range: bytes=0-9", &format!("If-Range: {lm}")],
    );
    assert_eq!(
        out.status, 206,
        "If-Range equal to Last-Modified must give the range"
    );
    let out = fetch(
        &server,
        "/digits.txt",
        &["Range: bytes=0-9", &format!("If-Range: {PAST}")],
    );
    assert_eq!((out.status, out.body.len()), (200, 1000));
}

#[test]
fn every_response_kind_is_framed_for_keep_alive() {
    let www = site();
    let server = serve(&www);
    let (etag, _) = validators(&server, "/digits.txt");
    let h = "Host: x\r\n";
    let batch = [
        format!("GET /nope.txt HTTP/1.1\r\n{h}\r\n"),
        format!("GET /digits.txt HTTP/1.1\r\n{h}Range: bytes=5000-\r\n\r\n"),
        format!("GET /digits.txt HTTP/1.1\r\n{h}If-None-Match: {etag}\r\n\r\n"),
        format!("GET /digits.txt HTTP/1.1\r\n{h}If-Match: \"x\"\r\n\r\n"),
        format!("GET /digits.txt HTTP/1.1\r\n{h}Range: bytes=0-1,5-6\r\n\r\n"),
        format!("GET /digits.txt HTTP/1.1\r\n{h}Range: bytes=2-3\r\n\r\n"),
        format!("GET /docs HTTP/1.1\r\n{h}\r\n"),
        format!("GET /list/ HTTP/1.1\r\n{h}\r\n"),
        format!("POST /hello.txt HTTP/1.1\r\n{h}Content-Length: 3\r\n\r\nabc"),
        format!("GET /hello.txt HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
    ]
    .concat();
    let mut conn = server.connect();
    conn.send(batch.as_bytes());
    for want in [404, 416, 304, 412, 206, 206, 301, 200, 405] {
        let resp = conn.read_response();
        assert_eq!(resp.status, want, "{resp:?}");
    }
    let last = conn.read_response();
    assert_eq!(
        (last.status, last.body.as_slice()),
        (200, HELLO),
        "framing lost along the way"
    );
}

// ---- directories ------------------------------------------------------------------------------

#[test]
fn directory_without_slash_redirects_301() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/docs", &[]);
    assert_eq!(out.status, 301);
    let location = out.header("location").expect("Location");
    assert!(location.ends_with("/docs/"), "Location {location}");
}

#[test]
fn directory_with_index_html_serves_it() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/docs/", &[]);
    assert_eq!((out.status, out.text().as_str()), (200, "<h1>docs</h1>"));
    assert!(
        out.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
}

#[test]
fn autoindex_lists_entries_escaped_and_sorted() {
    let www = site();
    let server = serve(&www);
    let out = fetch(&server, "/list/", &[]);
    assert_eq!(out.status, 200);
    assert!(
        out.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    let html = out.text();
    assert!(
        html.contains("&lt;b&gt;&amp;x.txt"),
        "escaped name missing:\n{html}"
    );
    assert!(!html.contains("<b>&x.txt"), "raw name in listing:\n{html}");
    assert!(!html.contains("q\"x'"), "quote not escaped:\n{html}");
    let (a, b) = (
        html.find("a.txt").expect("a.txt"),
        html.find("b.txt").expect("b.txt"),
    );
    assert!(a < b, "listing not sorted");
    assert!(html.contains("sub/"), "subdirectory not marked:\n{html}");
    assert!(!html.contains(".hidden"), "dotfile listed:\n{html}");
}

#[test]
fn autoindex_is_off_by_default_in_config_files() {
    let www = site();
    let server = serve_location(&www, "");
    assert_eq!(fetch(&server, "/list/", &[]).status, 403);
    assert_eq!(fetch(&server, "/docs/", &[]).status, 200);
}

// ---- precompressed siblings -------------------------------------------------------------------

/// GET /app.js with `Accept-Encoding: ae` (or none) → (Content-Encoding, body).
fn negotiate(server: &Server, path: &str, ae: Option<&str>) -> (Option<String>, String) {
    let header = ae.map(|ae| format!("Accept-Encoding: {ae}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let out = fetch(server, path, &headers);
    assert_eq!(out.status, 200, "{path} {ae:?}");
    let vary = out.header("vary").unwrap_or("");
    assert!(
        vary.split(',')
            .any(|v| v.trim().eq_ignore_ascii_case("accept-encoding")),
        "{path} {ae:?}: Vary {vary:?} lacks Accept-Encoding"
    );
    assert_eq!(
        out.header("content-length").map(str::parse::<usize>),
        Some(Ok(out.body.len()))
    );
    if out.header("content-encoding").is_some() {
        let ct = out.header("content-type").unwrap_or("");
        assert!(
            ct.contains("javascript") || ct.contains("css"),
            "encoded variant typed {ct}"
        );
    }
    (
        out.header("content-encoding").map(str::to_owned),
        out.text(),
    )
}

#[test]
fn precompressed_sibling_is_chosen_by_accept_encoding() {
    let www = site();
    let server = serve(&www);
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (None, None, "console.log('identity')"),
        (Some("identity"), None, "console.log('identity')"),
        (Some("gzip"), Some("gzip"), "GZ-BYTES"),
        (Some("GZIP"), Some("gzip"), "GZ-BYTES"),
        (Some("br"), Some("br"), "BR-BYTES!"),
        (Some("zstd"), Some("zstd"), "ZST-BYTES!!"),
        (Some("gzip;q=0.5, br;q=0.8"), Some("br"), "BR-BYTES!"),
        (
            Some("br;q=0.1, zstd;q=0.2, gzip;q=0.9"),
            Some("gzip"),
            "GZ-BYTES",
        ),
        (Some("br;q=0, gzip"), Some("gzip"), "GZ-BYTES"),
        (Some("gzip;q=0"), None, "console.log('identity')"),
        (Some("deflate, compress"), None, "console.log('identity')"),
    ];
    for (ae, want_enc, want_body) in cases {
        let (enc, body) = negotiate(&server, "/app.js", *ae);
        assert_eq!(enc.as_deref(), *want_enc, "Accept-Encoding: {ae:?}");
        assert_eq!(body, *want_body, "Accept-Encoding: {ae:?}");
    }
}

#[test]
fn precompressed_choice_is_limited_to_existing_siblings() {
    let www = site();
    let server = serve(&www);
    let (enc, body) = negotiate(&server, "/only.css", Some("br, zstd, gzip;q=0.5"));
    assert_eq!((enc.as_deref(), body.as_str()), (Some("gzip"), "ONLY-GZ"));
    let out = fetch(&server, "/hello.txt", &["Accept-Encoding: gzip, br"]);
    assert_eq!(out.header("content-encoding"), None);
    assert_eq!(out.body, HELLO);
}

#[test]
fn precompressed_variant_has_its_own_etag() {
    let www = site();
    let server = serve(&www);
    let plain = fetch(&server, "/app.js", &[]);
    let gz = fetch(&server, "/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_ne!(
        plain.header("etag"),
        gz.header("etag"),
        "two representations share one ETag"
    );
}

#[test]
fn precompressed_off_serves_identity() {
    let www = site();
    let server = serve_location(&www, "precompressed = false");
    let out = fetch(&server, "/app.js", &["Accept-Encoding: gzip, br"]);
    assert_eq!(out.header("content-encoding"), None);
    assert_eq!(out.text(), "console.log('identity')");
}

// ---- never outside the root -------------------------------------------------------------------

/// `target` must be refused with 400 and never leak the secret; the server keeps serving.
fn assert_traversal_refused(target: &str) {
    let www = site();
    let server = serve(&www);
    let resp = raw_get(&server, target);
    assert!(
        !resp.text().contains(SECRET),
        "{target} leaked a file outside the root"
    );
    assert_eq!(resp.status, 400, "{target}: {resp:?}");
    server.assert_serves("/hello.txt", HELLO);
}

macro_rules! traversal_refused {
    ($($name:ident: $target:expr,)*) => {$(
        #[test]
        fn $name() {
            assert_traversal_refused($target);
        }
    )*};
}

traversal_refused! {
    traversal_dotdot_segment_is_400: "/../secret.txt",
    traversal_dotdot_after_directory_is_400: "/docs/../../secret.txt",
    traversal_encoded_dots_is_400: "/%2e%2e/secret.txt",
    traversal_encoded_dots_uppercase_is_400: "/%2E%2E/secret.txt",
    traversal_dot_and_encoded_dot_is_400: "/.%2e/secret.txt",
    traversal_encoded_dot_and_dot_is_400: "/%2e./secret.txt",
    traversal_encoded_slash_is_400: "/..%2fsecret.txt",
    traversal_encoded_slashes_after_directory_is_400: "/docs%2f..%2f..%2fsecret.txt",
    traversal_encoded_backslash_is_400: "/..%5csecret.txt",
    traversal_backslash_is_400: "/..\\secret.txt",
    traversal_encoded_nul_is_400: "/hello.txt%00.html",
    traversal_deep_dotdot_is_400: "/docs/a/b/../../../../secret.txt",
}

#[test]
fn dotdot_inside_the_root_never_escapes() {
    let www = site();
    let server = serve(&www);
    // Whether normalised (200) or refused (400), this must be the root's file, never outside.
    let resp = raw_get(&server, "/docs/../hello.txt");
    assert!(matches!(resp.status, 200 | 400), "{resp:?}");
    if resp.status == 200 {
        assert_eq!(resp.body, HELLO);
    }
}

#[test]
fn symlink_inside_root_is_served_by_default() {
    let www = site();
    let server = serve(&www);
    assert_eq!(fetch(&server, "/inside-link.txt", &[]).body, HELLO);
    assert_eq!(
        fetch(&server, "/alias/index.html", &[]).text(),
        "<h1>docs</h1>"
    );
}

#[test]
fn symlink_to_outside_root_is_403_by_default() {
    let www = site();
    let server = serve(&www);
    for path in ["/outside-link.txt", "/outside-dir/secret.txt"] {
        let out = fetch(&server, path, &[]);
        assert!(!out.text().contains(SECRET), "{path} leaked");
        assert_eq!(out.status, 403, "{path}");
    }
    // The same holds with a config file's default policy.
    let server = serve_location(&www, "");
    assert_eq!(fetch(&server, "/outside-link.txt", &[]).status, 403);
}

#[test]
fn symlink_to_outside_root_is_served_under_follow() {
    let www = site();
    let server = serve_location(&www, "symlinks = \"follow\"");
    for path in ["/outside-link.txt", "/outside-dir/secret.txt"] {
        let out = fetch(&server, path, &[]);
        assert_eq!((out.status, out.text().as_str()), (200, SECRET), "{path}");
    }
}

#[test]
fn symlinks_refuse_policy_refuses_even_inside_links() {
    let www = site();
    let server = serve_location(&www, "symlinks = \"refuse\"");
    assert_eq!(fetch(&server, "/inside-link.txt", &[]).status, 403);
    assert_eq!(fetch(&server, "/outside-link.txt", &[]).status, 403);
    assert_eq!(fetch(&server, "/hello.txt", &[]).status, 200);
}

#[test]
fn dotfiles_are_404_by_default() {
    let www = site();
    let server = serve(&www);
    for path in ["/.env", "/.git/config", "/sub/.hidden", "/.git/"] {
        let out = fetch(&server, path, &[]);
        assert_eq!(out.status, 404, "{path}");
        assert!(!out.text().contains("DOTENV") && !out.text().contains("GITCONFIG"));
    }
    // Encoded dot: `/%2eenv` is the same name.
    assert_eq!(raw_get(&server, "/%2eenv").status, 404);
}

#[test]
fn dotfiles_are_served_when_allowed() {
    let www = site();
    let server = serve_location(&www, "dotfiles = \"allow\"");
    assert_eq!(fetch(&server, "/.env", &[]).text(), "DOTENV");
    assert_eq!(fetch(&server, "/.git/config", &[]).text(), "GITCONFIG");
}

// ---- large files ------------------------------------------------------------------------------

const LARGE: usize = 64 * 1024 * 1024;

#[test]
fn large_file_downloads_intact() {
    let www = site();
    let data = pseudo_random(LARGE, 64);
    let want = sha256(&data);
    www.file("large.bin", &data);
    drop(data);
    let server = serve(&www);
    let dl = tempfile::tempdir().expect("download dir");
    let dest = dl.path().join("large.bin");
    let out = curl_to(&dest, &[server.url("/large.bin")]);
    assert_eq!((out.exit, out.status), (0, 200), "{}", out.stderr);
    assert_eq!(
        out.header("content-length"),
        Some(LARGE.to_string().as_str())
    );
    assert_eq!(sha256_file(&dest), want, "64 MiB download corrupted");
}

#[test]
fn large_file_range_from_the_middle_is_exact() {
    let www = site();
    let data = pseudo_random(LARGE, 65);
    www.file("large.bin", &data);
    let server = serve(&www);
    let (first, last) = (40_000_001usize, 40_000_001 + 3 * 1024 * 1024);
    let mut conn = server.connect();
    conn.send(
        format!("GET /large.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={first}-{last}\r\n\r\n")
            .as_bytes(),
    );
    let resp = conn.read_response();
    assert_eq!(resp.status, 206);
    assert_eq!(
        resp.header("content-range"),
        Some(format!("bytes {first}-{last}/{LARGE}").as_str())
    );
    assert!(
        resp.body == data[first..=last],
        "range bytes differ from the file"
    );
    // Keep-alive after a large range, and after HEAD of a large file: framing holds.
    assert_eq!(conn.request(&get("/hello.txt")).body, HELLO);
    conn.send(b"HEAD /large.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_head_response();
    assert_eq!(
        head.header("content-length"),
        Some(LARGE.to_string().as_str())
    );
    assert_eq!(
        conn.request(&get_close("/hello.txt")).body,
        HELLO,
        "HEAD sent a body"
    );
}

/// `rchar` and `wchar` of `/proc/PID/io`: bytes the process passed through read-like and
/// write-like calls. `sendfile(2)` counts its bytes in both; `pread` counts in `rchar` only, and
/// `send(2)` on a socket in neither.
fn io_chars(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {io}"))
    };
    (field("rchar:"), field("wchar:"))
}

#[test]
fn sendfile_is_used_by_default_and_off_copies_through_user_space() {
    const SIZE: usize = 8 * 1024 * 1024;
    let www = site();
    let data = pseudo_random(SIZE, 66);
    www.file("large.bin", &data);
    for (location, by_sendfile) in [("", true), ("sendfile = false", false)] {
        let server = serve_location(&www, location);
        let mut conn = server.connect();
        // A first answer, so that start-up reads and writes are behind us.
        assert_eq!(conn.request(&get("/hello.txt")).body, HELLO);
        let (r0, w0) = io_chars(server.pid());
        let resp = conn.request(&get("/large.bin"));
        let (r1, w1) = io_chars(server.pid());
        assert_eq!(resp.status, 200, "{location:?}");
        assert!(
            resp.body == data,
            "{location:?}: body differs from the file"
        );
        let (read, written) = (r1 - r0, w1 - w0);
        assert!(read >= SIZE as u64, "{location:?}: only {read} bytes read");
        if by_sendfile {
            assert!(
                written >= SIZE as u64,
                "sendfile not used: wchar +{written}"
            );
        } else {
            assert!(written < SIZE as u64 / 8, "sendfile used: wchar +{written}");
        }
        // Keep-alive holds after the file either way.
        assert_eq!(conn.request(&get("/hello.txt")).body, HELLO, "{location:?}");
    }
}

// ---- virtual hosts ----------------------------------------------------------------------------

#[test]
fn vhost_is_chosen_by_host_header() {
    let one = WebRoot::new();
    one.file("who.txt", "one");
    let two = WebRoot::new();
    two.file("who.txt", "two");
    let toml = format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n\n\
         [[vhost]]\nnames = [\"one.test\"]\n[[vhost.location]]\npath = \"/\"\nroot = {}\n\n\
         [[vhost]]\nnames = [\"two.test\", \"*.two.test\"]\n[[vhost.location]]\npath = \"/\"\nroot = {}\n",
        switchyard_interop::toml_path(one.root()),
        switchyard_interop::toml_path(two.root()),
    );
    let server = Server::run_config(&toml).start();
    for (host, want) in [
        ("one.test", "one"),
        ("two.test", "two"),
        ("TWO.test:8080", "two"),
        ("www.two.test", "two"),
        ("unknown.test", "one"),
    ] {
        let mut conn = Conn::open(server.addr());
        conn.send(
            format!("GET /who.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let resp = conn.read_response();
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, want),
            "Host: {host}"
        );
    }
}
