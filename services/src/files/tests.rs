//! `serve` against real directory trees: the behaviour a client sees, status by status.

use std::fs;
use std::os::unix::fs::{FileExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use switchyard_conf::{DotfilePolicy, FilesConfig, Limits, SymlinkPolicy};

use super::{FileCache, FilesLocation};
use crate::message::{Body, BodyPart, Request, Response};

/// A served root next to a directory that must never be reachable.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        for d in ["dir", "empty", "list/sub", "list/.hidden-dir", "deep/er"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::create_dir_all(&outside).unwrap();
        let files: &[(&str, &[u8])] = &[
            ("hello.txt", b"hello world"),
            ("dir/index.html", b"<h1>index</h1>"),
            (".env", b"SECRET=1"),
            ("dir/.secret", b"secret"),
            ("list/a.txt", b"a"),
            ("list/<b>&.txt", b"b"),
            ("list/.hidden", b"h"),
            ("deep/er/file.css", b"body{}"),
            ("app.js", b"console.log('identity')"),
            ("app.js.br", b"BROTLI"),
            ("app.js.gz", b"GZIP"),
            ("digits.txt", b"0123456789abcdefghij"),
        ];
        for (name, content) in files {
            fs::write(root.join(name), content).unwrap();
        }
        fs::write(outside.join("secret.txt"), b"outside secret").unwrap();
        Tree {
            _dir: dir,
            root,
            outside,
        }
    }

    fn cfg(&self) -> FilesConfig {
        FilesConfig::new(self.root.clone())
    }
}

/// Header fields of a request, in order.
type Fields<'a> = &'a [(&'a str, &'a str)];

/// The files service's answer for a location configured as `cfg`.
fn serve(req: &Request, cfg: &FilesConfig, limits: &Limits, cache: &FileCache) -> Response {
    super::serve(req, &FilesLocation::new(cfg.clone()), limits, cache)
}

fn request(method: Method, target: &str, headers: Fields<'_>) -> Request {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Request {
        method,
        path,
        query,
        version: Version::HTTP_11,
        host: Some("localhost".to_owned()),
        headers: map,
        scheme: "http",
        peer: "127.0.0.1:1".parse().unwrap(),
        body: Bytes::new(),
        stream: None,
    }
}

fn get(cfg: &FilesConfig, cache: &FileCache, target: &str, headers: Fields<'_>) -> Response {
    serve(
        &request(Method::GET, target, headers),
        cfg,
        &Limits::default(),
        cache,
    )
}

fn body(response: &Response) -> Vec<u8> {
    fn part(out: &mut Vec<u8>, part: &BodyPart) {
        match part {
            BodyPart::Bytes(b) => out.extend_from_slice(b),
            BodyPart::File(f) => {
                let mut buf = vec![0; f.len as usize];
                f.file.read_exact_at(&mut buf, f.offset).unwrap();
                out.extend_from_slice(&buf);
            }
        }
    }
    let mut out = Vec::new();
    match &response.body {
        Body::Empty => {}
        Body::Bytes(b) => out.extend_from_slice(b),
        Body::File(f) => part(&mut out, &BodyPart::File(f.clone())),
        Body::Parts(parts) => parts.iter().for_each(|p| part(&mut out, p)),
        Body::Stream(_) | Body::Upgrade(_) => panic!("the files service never streams"),
    }
    assert_eq!(out.len() as u64, response.body.len());
    out
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.header(name).map(|v| v.to_str().unwrap())
}

#[test]
fn serves_a_file_with_its_metadata() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let r = get(&tree.cfg(), &cache, "/hello.txt", &[]);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(body(&r), b"hello world");
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&r, "accept-ranges"), Some("bytes"));
    // No precompressed sibling: the answer does not depend on Accept-Encoding.
    assert_eq!(header(&r, "vary"), None);
    let etag = header(&r, "etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with("-b\""), "{etag}");
    assert!(httpdate::parse_http_date(header(&r, "last-modified").unwrap()).is_ok());
    for framing in [
        "content-length",
        "date",
        "server",
        "connection",
        "content-encoding",
    ] {
        assert!(r.header(framing).is_none(), "{framing}");
    }
    // The second request is a route-cache hit and answers the same.
    let again = get(&tree.cfg(), &cache, "/hello.txt", &[]);
    assert_eq!(
        (again.status, body(&again)),
        (StatusCode::OK, b"hello world".to_vec())
    );
    assert_eq!(header(&again, "etag"), Some(etag));
    // With a sibling to choose (found when the route is made), the answer varies.
    fs::write(tree.root.join("hello.txt.gz"), b"gz").unwrap();
    let fresh = FileCache::new(1 << 20);
    let r = get(&tree.cfg(), &fresh, "/hello.txt", &[]);
    assert_eq!(header(&r, "vary"), Some("accept-encoding"));
    // Without precompression there is no Vary.
    let mut cfg = tree.cfg();
    cfg.precompressed = false;
    assert_eq!(header(&get(&cfg, &cache, "/hello.txt", &[]), "vary"), None);
}

#[test]
fn methods() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let r = serve(
            &request(method.clone(), "/hello.txt", &[]),
            &tree.cfg(),
            &Limits::default(),
            &cache,
        );
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header(&r, "allow"), Some("GET, HEAD"));
    }
    // HEAD is GET: same status, headers and body length (the session drops the body).
    let head = serve(
        &request(Method::HEAD, "/hello.txt", &[]),
        &tree.cfg(),
        &Limits::default(),
        &cache,
    );
    let get = get(&tree.cfg(), &cache, "/hello.txt", &[]);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers, get.headers);
    assert_eq!(head.body.len(), get.body.len());
    // RFC 9110 §14.2: Range is defined for GET only; HEAD ignores it.
    let head = serve(
        &request(Method::HEAD, "/hello.txt", &[("range", "bytes=0-1")]),
        &tree.cfg(),
        &Limits::default(),
        &cache,
    );
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 11));
}

#[test]
fn path_refusals_and_misses() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let table: &[(&str, StatusCode)] = &[
        ("/../outside/secret.txt", StatusCode::BAD_REQUEST),
        ("/%2e%2e/outside/secret.txt", StatusCode::BAD_REQUEST),
        ("/.%2e/outside/secret.txt", StatusCode::BAD_REQUEST),
        ("/dir/..%2f..%2foutside/secret.txt", StatusCode::BAD_REQUEST),
        ("/..%5coutside%5csecret.txt", StatusCode::BAD_REQUEST),
        ("/hello.txt%00.html", StatusCode::BAD_REQUEST),
        ("/%zz", StatusCode::BAD_REQUEST),
        ("/%ff", StatusCode::BAD_REQUEST),
        ("/%252e%252e/outside/secret.txt", StatusCode::NOT_FOUND),
        ("/missing.txt", StatusCode::NOT_FOUND),
        ("/hello.txt/", StatusCode::NOT_FOUND),
        ("/hello.txt/more", StatusCode::NOT_FOUND),
        ("/.env", StatusCode::NOT_FOUND),
        ("/dir/.secret", StatusCode::NOT_FOUND),
        ("/%2eenv", StatusCode::NOT_FOUND),
        ("/list/.hidden-dir/", StatusCode::NOT_FOUND),
        ("/empty/", StatusCode::FORBIDDEN),
        // collapsed `//` and `.` segments
        ("//hello.txt", StatusCode::OK),
        ("/./hello.txt", StatusCode::OK),
        ("/deep//er/./file.css", StatusCode::OK),
        ("/%68ello.txt", StatusCode::OK),
    ];
    for (target, status) in table {
        let r = get(&tree.cfg(), &cache, target, &[]);
        assert_eq!(r.status, *status, "{target}");
        assert!(!body(&r).starts_with(b"outside"), "{target}");
    }
    // Dotfiles are served when allowed.
    let mut cfg = tree.cfg();
    cfg.dotfiles = DotfilePolicy::Allow;
    let r = get(&cfg, &cache, "/.env", &[]);
    assert_eq!((r.status, body(&r)), (StatusCode::OK, b"SECRET=1".to_vec()));
}

#[test]
fn directories_redirect_index_list_or_refuse() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let cfg = tree.cfg();
    let table: &[(&str, &str)] = &[
        ("/dir", "/dir/"),
        ("/dir?a=1&b", "/dir/?a=1&b"),
        ("/deep/er", "/deep/er/"),
        ("/%64ir", "/%64ir/"),
        // `//evil.example/...` as a Location would leave the site
        ("//dir", "/dir/"),
    ];
    for (target, location) in table {
        let r = get(&cfg, &cache, target, &[]);
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY, "{target}");
        assert_eq!(header(&r, "location"), Some(*location), "{target}");
    }
    let r = get(&cfg, &cache, "/dir/", &[]);
    assert_eq!(
        (r.status, body(&r)),
        (StatusCode::OK, b"<h1>index</h1>".to_vec())
    );
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        get(&cfg, &cache, "/list/", &[]).status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get(&cfg, &cache, "/", &[]).status, StatusCode::FORBIDDEN);

    let mut listing = tree.cfg();
    listing.autoindex = true;
    let r = get(&listing, &cache, "/list/", &[]);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(body(&r)).unwrap();
    assert!(html.contains("<a href=\"../\">../</a>"), "{html}");
    assert!(html.contains("<a href=\"sub/\">sub/</a>"), "{html}");
    assert!(html.contains("<a href=\"a.txt\">a.txt</a>"), "{html}");
    assert!(
        html.contains("<a href=\"%3Cb%3E%26.txt\">&lt;b&gt;&amp;.txt</a>"),
        "{html}"
    );
    assert!(!html.contains(".hidden"), "{html}");
    assert!(
        html.find("sub/").unwrap() < html.find("a.txt").unwrap(),
        "directories first"
    );
    // Links are listed only where the policy would follow them.
    symlink("a.txt", tree.root.join("list/link-in.txt")).unwrap();
    symlink(
        tree.outside.join("secret.txt"),
        tree.root.join("list/link-out.txt"),
    )
    .unwrap();
    let html = String::from_utf8(body(&get(&listing, &cache, "/list/", &[]))).unwrap();
    assert!(
        html.contains("link-in.txt") && !html.contains("link-out.txt"),
        "{html}"
    );
    // An index file still wins over the listing.
    assert_eq!(
        body(&get(&listing, &cache, "/dir/", &[])),
        b"<h1>index</h1>"
    );
    // Dotfiles listed when allowed.
    listing.dotfiles = DotfilePolicy::Allow;
    let html = String::from_utf8(body(&get(&listing, &cache, "/list/", &[]))).unwrap();
    assert!(
        html.contains(".hidden") && html.contains(".hidden-dir/"),
        "{html}"
    );
    // Configured index names that could climb out are skipped.
    let mut climbing = tree.cfg();
    climbing.index = vec!["../hello.txt".to_owned(), "/etc/passwd".to_owned()];
    assert_eq!(
        get(&climbing, &cache, "/dir/", &[]).status,
        StatusCode::FORBIDDEN
    );
}

#[test]
fn symlinks_under_each_policy() {
    let tree = Tree::new();
    let root = &tree.root;
    symlink(root.join("hello.txt"), root.join("inside-abs.txt")).unwrap();
    symlink("hello.txt", root.join("inside-rel.txt")).unwrap();
    symlink("dir", root.join("inside-dir")).unwrap();
    symlink(
        tree.outside.join("secret.txt"),
        root.join("outside-abs.txt"),
    )
    .unwrap();
    symlink("../outside/secret.txt", root.join("outside-rel.txt")).unwrap();
    symlink(&tree.outside, root.join("outside-dir")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    // `root2` shares a prefix with `root` but is outside it.
    let root2 = root.with_file_name("root2");
    fs::create_dir(&root2).unwrap();
    fs::write(root2.join("x.txt"), b"prefix trick").unwrap();
    symlink(root2.join("x.txt"), root.join("prefix.txt")).unwrap();

    use StatusCode as S;
    let (ok, forbidden, missing) = (S::OK, S::FORBIDDEN, S::NOT_FOUND);
    let table: &[(&str, [StatusCode; 3])] = &[
        // path                          InsideRoot  Follow  Refuse
        ("/inside-abs.txt", [ok, ok, forbidden]),
        ("/inside-rel.txt", [ok, ok, forbidden]),
        ("/inside-dir/index.html", [ok, ok, forbidden]),
        ("/inside-dir/", [ok, ok, forbidden]),
        ("/outside-abs.txt", [forbidden, ok, forbidden]),
        ("/outside-rel.txt", [forbidden, ok, forbidden]),
        ("/outside-dir/secret.txt", [forbidden, ok, forbidden]),
        ("/prefix.txt", [forbidden, ok, forbidden]),
        ("/dangling", [missing, missing, forbidden]),
    ];
    let policies = [
        SymlinkPolicy::InsideRoot,
        SymlinkPolicy::Follow,
        SymlinkPolicy::Refuse,
    ];
    for (target, statuses) in table {
        for (policy, status) in policies.iter().zip(statuses) {
            let mut cfg = tree.cfg();
            cfg.symlinks = *policy;
            let cache = FileCache::new(1 << 20);
            let r = get(&cfg, &cache, target, &[]);
            assert_eq!(r.status, *status, "{target} under {policy:?}");
            if r.status == S::OK && *policy != SymlinkPolicy::Follow {
                assert!(!body(&r).contains(&b's'), "{target}: {:?}", body(&r));
            }
        }
    }
}

#[test]
fn a_cached_route_swapped_for_an_escaping_link_is_not_followed() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let cfg = tree.cfg();
    assert_eq!(get(&cfg, &cache, "/hello.txt", &[]).status, StatusCode::OK);
    fs::remove_file(tree.root.join("hello.txt")).unwrap();
    symlink(tree.outside.join("secret.txt"), tree.root.join("hello.txt")).unwrap();
    let r = get(&cfg, &cache, "/hello.txt", &[]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A deleted file is not served from the cache either.
    assert_eq!(get(&cfg, &cache, "/digits.txt", &[]).status, StatusCode::OK);
    fs::remove_file(tree.root.join("digits.txt")).unwrap();
    assert_eq!(
        get(&cfg, &cache, "/digits.txt", &[]).status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn special_files_are_never_opened() {
    let tree = Tree::new();
    let fifo = tree.root.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    symlink("fifo", tree.root.join("fifo-link")).unwrap();
    let cache = FileCache::new(1 << 20);
    // Would block forever if the fifo were opened for reading.
    assert_eq!(
        get(&tree.cfg(), &cache, "/fifo", &[]).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&tree.cfg(), &cache, "/fifo-link", &[]).status,
        StatusCode::NOT_FOUND
    );
    let mut cfg = tree.cfg();
    cfg.index = vec!["fifo".to_owned()];
    assert_eq!(get(&cfg, &cache, "/", &[]).status, StatusCode::FORBIDDEN);
}

#[test]
fn conditional_requests() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let cfg = tree.cfg();
    let first = get(&cfg, &cache, "/hello.txt", &[]);
    let etag = header(&first, "etag").unwrap();
    let lm = header(&first, "last-modified").unwrap();

    let r = get(&cfg, &cache, "/hello.txt", &[("if-none-match", etag)]);
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(matches!(r.body, Body::Empty));
    assert_eq!(header(&r, "etag"), Some(etag));
    assert_eq!(header(&r, "last-modified"), Some(lm));
    assert_eq!(header(&r, "content-type"), None);

    let table: &[(Fields<'_>, StatusCode)] = &[
        (&[("if-none-match", "\"other\"")], StatusCode::OK),
        (&[("if-none-match", "*")], StatusCode::NOT_MODIFIED),
        (&[("if-modified-since", lm)], StatusCode::NOT_MODIFIED),
        (
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            StatusCode::OK,
        ),
        (
            &[("if-none-match", "\"other\""), ("if-modified-since", lm)],
            StatusCode::OK,
        ),
        (
            &[("if-match", "\"other\"")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (&[("if-match", etag)], StatusCode::OK),
        (
            &[("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            &[("if-match", etag), ("range", "bytes=0-0")],
            StatusCode::PARTIAL_CONTENT,
        ),
        (
            &[("if-range", etag), ("range", "bytes=0-0")],
            StatusCode::PARTIAL_CONTENT,
        ),
        (
            &[("if-range", lm), ("range", "bytes=0-0")],
            StatusCode::PARTIAL_CONTENT,
        ),
        (
            &[("if-range", "\"other\""), ("range", "bytes=0-0")],
            StatusCode::OK,
        ),
        (
            &[
                ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT"),
                ("range", "bytes=0-0"),
            ],
            StatusCode::OK,
        ),
    ];
    for (fields, status) in table {
        assert_eq!(
            get(&cfg, &cache, "/hello.txt", fields).status,
            *status,
            "{fields:?}"
        );
    }
}

#[test]
fn ranges() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let cfg = tree.cfg();
    let r = get(&cfg, &cache, "/digits.txt", &[("range", "bytes=2-4")]);
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), Some("bytes 2-4/20"));
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(body(&r), b"234");

    let r = get(&cfg, &cache, "/digits.txt", &[("range", "bytes=-3")]);
    assert_eq!(
        (header(&r, "content-range"), body(&r)),
        (Some("bytes 17-19/20"), b"hij".to_vec())
    );

    let r = get(&cfg, &cache, "/digits.txt", &[("range", "bytes=20-")]);
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), Some("bytes */20"));
    assert!(r.body.is_empty());

    // Coalesced into one: a plain 206.
    let r = get(
        &cfg,
        &cache,
        "/digits.txt",
        &[("range", "bytes=0-2,3-5,4-6")],
    );
    assert_eq!(
        (header(&r, "content-range"), body(&r)),
        (Some("bytes 0-6/20"), b"0123456".to_vec())
    );

    // Ignored: other unit, bad syntax, several Range fields.
    for fields in [
        &[("range", "items=0-1")][..],
        &[("range", "bytes=5-1")],
        &[("range", "bytes=0-1"), ("range", "bytes=3-4")],
    ] {
        let r = get(&cfg, &cache, "/digits.txt", fields);
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 20), "{fields:?}");
    }

    // More ranges than limits.max_ranges after coalescing: the whole file.
    let limits = Limits {
        max_ranges: 2,
        ..Limits::default()
    };
    let req = request(
        Method::GET,
        "/digits.txt",
        &[("range", "bytes=0-0,2-2,4-4")],
    );
    let r = serve(&req, &cfg, &limits, &cache);
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 20));
}

fn multipart_body(r: &Response) -> String {
    let ct = header(r, "content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let text = String::from_utf8(body(r)).unwrap();
    text.replace(boundary, "BOUNDARY")
}

#[test]
fn multipart_ranges_from_memory_and_from_disk() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let expected = "--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/20\r\n\r\n01\
                    \r\n--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 18-19/20\r\n\r\nij\
                    \r\n--BOUNDARY--\r\n";
    // Small (cached) and large (streamed from the open file) give the same bytes.
    for small_file_max in [1 << 16, 4] {
        let limits = Limits {
            small_file_max,
            ..Limits::default()
        };
        let req = request(Method::GET, "/digits.txt", &[("range", "bytes=-2, 0-1")]);
        let r = serve(&req, &tree.cfg(), &limits, &cache);
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&r, "content-range"), None);
        assert_eq!(multipart_body(&r), expected);
        let Body::Parts(parts) = &r.body else {
            panic!("not multipart: {:?}", r.body)
        };
        assert_eq!(parts.len(), 5);
        let from_disk = matches!(parts[1], BodyPart::File(_));
        assert_eq!(from_disk, small_file_max == 4);
    }
}

#[test]
fn large_files_are_streamed_not_read() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let limits = Limits {
        small_file_max: 10,
        ..Limits::default()
    };
    let req = request(Method::GET, "/digits.txt", &[]);
    let r = serve(&req, &tree.cfg(), &limits, &cache);
    let Body::File(range) = &r.body else {
        panic!("not a file body: {:?}", r.body)
    };
    assert_eq!((range.offset, range.len), (0, 20));
    assert_eq!(body(&r), b"0123456789abcdefghij");
    let req = request(Method::GET, "/digits.txt", &[("range", "bytes=5-9")]);
    let r = serve(&req, &tree.cfg(), &limits, &cache);
    let Body::File(range) = &r.body else {
        panic!("not a file body: {:?}", r.body)
    };
    assert_eq!((range.offset, range.len), (5, 5));
    assert_eq!(body(&r), b"56789");
}

#[test]
fn precompressed_siblings() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let cfg = tree.cfg();
    let table: &[(Fields<'_>, &[u8], Option<&str>)] = &[
        (&[], b"console.log('identity')", None),
        (
            &[("accept-encoding", "gzip, deflate, br, zstd")],
            b"BROTLI",
            Some("br"),
        ),
        (&[("accept-encoding", "gzip, zstd")], b"GZIP", Some("gzip")),
        (
            &[("accept-encoding", "br;q=0.5, gzip")],
            b"GZIP",
            Some("gzip"),
        ),
        (
            &[("accept-encoding", "zstd")],
            b"console.log('identity')",
            None,
        ),
        (
            &[("accept-encoding", "identity")],
            b"console.log('identity')",
            None,
        ),
        (
            &[("accept-encoding", "*;q=0, identity;q=0")],
            b"console.log('identity')",
            None,
        ),
    ];
    let mut etags = Vec::new();
    for (fields, content, coding) in table {
        let r = get(&cfg, &cache, "/app.js", fields);
        assert_eq!(r.status, StatusCode::OK, "{fields:?}");
        assert_eq!(body(&r), *content, "{fields:?}");
        assert_eq!(header(&r, "content-encoding"), *coding, "{fields:?}");
        assert_eq!(
            header(&r, "content-type"),
            Some("text/javascript; charset=utf-8"),
            "{fields:?}"
        );
        assert_eq!(header(&r, "vary"), Some("accept-encoding"), "{fields:?}");
        let etag = header(&r, "etag").unwrap().to_owned();
        assert_eq!(etag.ends_with("-br\""), *coding == Some("br"), "{etag}");
        etags.push((coding.map(str::to_owned), etag));
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 3, "one ETag per representation: {etags:?}");

    // Conditionals and ranges apply to the chosen representation.
    let (_, br_etag) = etags
        .iter()
        .find(|(c, _)| c.as_deref() == Some("br"))
        .unwrap();
    let br_etag = br_etag.as_str();
    let r = get(
        &cfg,
        &cache,
        "/app.js",
        &[("accept-encoding", "br"), ("if-none-match", br_etag)],
    );
    assert_eq!(
        (r.status, header(&r, "vary")),
        (StatusCode::NOT_MODIFIED, Some("accept-encoding"))
    );
    let r = get(
        &cfg,
        &cache,
        "/app.js",
        &[("accept-encoding", "gzip"), ("if-none-match", br_etag)],
    );
    assert_eq!(r.status, StatusCode::OK);
    let r = get(
        &cfg,
        &cache,
        "/app.js",
        &[("accept-encoding", "br"), ("range", "bytes=0-1")],
    );
    assert_eq!(
        (header(&r, "content-range"), body(&r)),
        (Some("bytes 0-1/6"), b"BR".to_vec())
    );

    // Disabled: the identity file, and no Vary.
    let mut off = tree.cfg();
    off.precompressed = false;
    let r = get(&off, &cache, "/app.js", &[("accept-encoding", "br")]);
    assert_eq!(
        (header(&r, "content-encoding"), header(&r, "vary")),
        (None, None)
    );

    // Siblings obey the symlink policy and must be regular files.
    fs::write(tree.root.join("style.css"), b"identity").unwrap();
    symlink(
        tree.outside.join("secret.txt"),
        tree.root.join("style.css.br"),
    )
    .unwrap();
    fs::create_dir(tree.root.join("style.css.gz")).unwrap();
    let r = get(
        &cfg,
        &cache,
        "/style.css",
        &[("accept-encoding", "br, gzip")],
    );
    assert_eq!(
        (body(&r), header(&r, "content-encoding")),
        (b"identity".to_vec(), None)
    );
}

#[test]
fn a_changed_file_is_read_again() {
    let tree = Tree::new();
    let cache = FileCache::new(1 << 20);
    let cfg = tree.cfg();
    let path = tree.root.join("hello.txt");
    let first = get(&cfg, &cache, "/hello.txt", &[]);
    assert_eq!(body(&first), b"hello world");

    // Different size.
    fs::write(&path, b"goodbye").unwrap();
    let r = get(&cfg, &cache, "/hello.txt", &[]);
    assert_eq!(body(&r), b"goodbye");
    assert_ne!(header(&r, "etag"), header(&first, "etag"));

    // Same size, mtime set back to what it was: ctime still tells.
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, b"GOODBYE").unwrap();
    set_mtime(&path, mtime);
    std::thread::sleep(Duration::from_millis(20));
    let r = get(&cfg, &cache, "/hello.txt", &[]);
    assert_eq!(body(&r), b"GOODBYE");

    // Same content path replaced by rename (new inode).
    let tmp = tree.root.join("hello.tmp");
    fs::write(&tmp, b"renamed").unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(body(&get(&cfg, &cache, "/hello.txt", &[])), b"renamed");

    // clear() drops everything and serving still works.
    cache.clear();
    assert_eq!(body(&get(&cfg, &cache, "/hello.txt", &[])), b"renamed");
}

fn set_mtime(path: &Path, mtime: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[test]
fn future_mtimes_are_clamped_and_a_zero_cache_still_serves() {
    let tree = Tree::new();
    let cache = FileCache::new(0);
    set_mtime(
        &tree.root.join("hello.txt"),
        SystemTime::now() + Duration::from_secs(86_400 * 365),
    );
    let r = get(&tree.cfg(), &cache, "/hello.txt", &[]);
    assert_eq!(body(&r), b"hello world");
    let lm = httpdate::parse_http_date(header(&r, "last-modified").unwrap()).unwrap();
    assert!(lm <= SystemTime::now());
}

#[test]
fn within_the_revalidate_window_a_file_is_not_stated_again() {
    let tree = Tree::new();
    let cfg = tree.cfg();
    let path = tree.root.join("hello.txt");
    // A window far longer than the test: the cached answer must be served unchanged.
    let trusting = FileCache::with_revalidate(1 << 20, Duration::from_secs(3600));
    assert_eq!(
        body(&get(&cfg, &trusting, "/hello.txt", &[])),
        b"hello world"
    );
    fs::write(&path, b"edited").unwrap();
    assert_eq!(
        body(&get(&cfg, &trusting, "/hello.txt", &[])),
        b"hello world"
    );
    // With no window the same edit shows at once.
    let checking = FileCache::with_revalidate(1 << 20, Duration::ZERO);
    assert_eq!(body(&get(&cfg, &checking, "/hello.txt", &[])), b"edited");
    fs::write(&path, b"edited again").unwrap();
    assert_eq!(
        body(&get(&cfg, &checking, "/hello.txt", &[])),
        b"edited again"
    );
}
