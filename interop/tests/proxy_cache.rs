//! The response cache on a proxy location (`cache = true`), against the real binary and an
//! origin started here that answers as each request's query asks and counts what reaches it.
//!
//! Origin query keys: `cc` (Cache-Control), `etag`, `vary`, `delay` (ms before answering),
//! `len` (body bytes instead of the usual text). Its body is `PATH #N lang=L` where N counts
//! the requests for PATH and L is the request's `Accept-Language`. A conditional request whose
//! `If-None-Match` names the ETag gets a 304. While the origin is "down" it closes every
//! connection without answering.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_interop::{Conn, Response, Server, metric, toml_path};

// ---------------------------------------------------------------------------------------------
// The origin
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct OriginState {
    counts: Mutex<HashMap<String, usize>>,
    down: AtomicBool,
}

struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let state = Arc::new(OriginState::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Origin { addr, state }
    }

    /// Requests for `path` that reached the origin.
    fn count(&self, path: &str) -> usize {
        let counts = self.state.counts.lock().expect("counts");
        counts.get(path).copied().unwrap_or(0)
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Wait (bounded) until `path` was requested `n` times.
    fn wait_count(&self, path: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.count(path) < n {
            assert!(
                Instant::now() < deadline,
                "the origin saw {} requests for {path}, expected {n}",
                self.count(path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream, state: &OriginState) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut headers: HashMap<String, String> = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let t = h.trim_end();
            if t.is_empty() {
                break;
            }
            if let Some((k, v)) = t.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        if let Some(n) = headers
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            std::io::copy(&mut (&mut reader).take(n), &mut std::io::sink())?;
        }
        if state.down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let q: HashMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let n = {
            let mut counts = state.counts.lock().expect("counts");
            let n = counts.entry(path.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        if let Some(ms) = q.get("delay").and_then(|d| d.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let mut head = String::new();
        if let Some(cc) = q.get("cc") {
            head.push_str(&format!("Cache-Control: {cc}\r\n"));
        }
        if let Some(vary) = q.get("vary") {
            head.push_str(&format!("Vary: {vary}\r\n"));
        }
        if let Some(etag) = q.get("etag") {
            head.push_str(&format!("ETag: {etag}\r\n"));
            if headers.get("if-none-match") == Some(etag) {
                writer.write_all(format!("HTTP/1.1 304 Not Modified\r\n{head}\r\n").as_bytes())?;
                continue;
            }
        }
        let body = match q.get("len").and_then(|l| l.parse::<usize>().ok()) {
            Some(len) => (0..len).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>(),
            None => {
                let lang = headers.get("accept-language").map_or("-", String::as_str);
                format!("{path} #{n} lang={lang}").into_bytes()
            }
        };
        writer.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{head}\r\n",
                body.len()
            )
            .as_bytes(),
        )?;
        writer.write_all(&body)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

fn cached_proxy(origin: SocketAddr, cache: &str) -> Server {
    Server::run_config(&config(origin, cache)).start()
}

fn config(origin: SocketAddr, cache: &str) -> String {
    format!(
        "workers = 2\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n[cache]\n{cache}\n\n\
         [[vhost]]\n\n[[vhost.location]]\npath = \"/\"\nproxy = \"pool\"\ncache = true\n\n\
         [[vhost.location]]\npath = \"/uncached/\"\nproxy = \"pool\"\n\n\
         [[upstream]]\nname = \"pool\"\nmembers = [\"{origin}\"]\nmax_tries = 1\n\
         passive = {{ failures = 0 }}\n"
    )
}

fn request(server: &Server, method: &str, target: &str, extra: &str) -> Response {
    let mut conn = server.connect();
    conn.request(&format!(
        "{method} {target} HTTP/1.1\r\nHost: cache.test\r\n{extra}\r\n"
    ))
}

fn get(server: &Server, target: &str) -> Response {
    request(server, "GET", target, "")
}

fn status_of(r: &Response) -> String {
    r.header("cache-status").unwrap_or("").to_owned()
}

fn is_hit(r: &Response) -> bool {
    status_of(r).contains("; hit")
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[test]
fn freshness_table() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "");
    // (path, query, requests, expected origin requests, second answer is a hit)
    let cases = [
        ("/fresh", "cc=max-age%3D60", 3, 1, true),
        ("/smaxage", "cc=s-maxage%3D60%2C+max-age%3D0", 2, 1, true),
        ("/nostore", "cc=no-store%2C+max-age%3D60", 3, 3, false),
        ("/private", "cc=private%2C+max-age%3D60", 2, 2, false),
        ("/nocache", "cc=no-cache", 2, 2, false),
        ("/none", "", 2, 2, false),
        ("/varystar", "cc=max-age%3D60&vary=*", 2, 2, false),
    ];
    for (path, query, requests, upstream, hit) in cases {
        let target = format!("{path}?{query}");
        let first = get(&server, &target);
        assert_eq!(first.status, 200, "{path}: {first:?}");
        assert!(
            status_of(&first).contains("fwd="),
            "{path}: the first answer went upstream: {first:?}"
        );
        let mut last = first.clone();
        for _ in 1..requests {
            last = get(&server, &target);
            assert_eq!(last.status, 200, "{path}: {last:?}");
        }
        assert_eq!(origin.count(path), upstream, "{path}: requests upstream");
        assert_eq!(is_hit(&last), hit, "{path}: {last:?}");
        if hit {
            assert_eq!(last.body, first.body, "{path}");
            let age: u64 = last
                .header("age")
                .unwrap_or_else(|| panic!("{path}: a hit has Age: {last:?}"))
                .parse()
                .expect("Age is a number");
            assert!(age < 60, "{path}: Age {age}");
            assert!(status_of(&last).contains("ttl="), "{path}: {last:?}");
        }
    }
    // The same origin through a location without `cache = true`: never stored.
    for _ in 0..2 {
        let r = get(&server, "/uncached/x?cc=max-age%3D60");
        assert_eq!(r.status, 200);
        assert!(r.header("cache-status").is_none(), "{r:?}");
    }
    assert_eq!(origin.count("/uncached/x"), 2);
}

#[test]
fn vary_keeps_one_variant_per_request_header_value() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "");
    let target = "/vary?cc=max-age%3D60&vary=Accept-Language";
    let en = request(&server, "GET", target, "Accept-Language: en\r\n");
    let fr = request(&server, "GET", target, "Accept-Language: fr\r\n");
    let en2 = request(&server, "GET", target, "Accept-Language: en\r\n");
    let fr2 = request(&server, "GET", target, "Accept-Language: fr\r\n");
    assert_eq!(origin.count("/vary"), 2);
    assert!(en.text().ends_with("lang=en"), "{en:?}");
    assert!(fr.text().ends_with("lang=fr"), "{fr:?}");
    assert_eq!(en2.body, en.body);
    assert_eq!(fr2.body, fr.body);
    assert!(is_hit(&en2) && is_hit(&fr2), "{en2:?} {fr2:?}");
}

#[test]
fn a_304_from_the_origin_refreshes_the_stored_response() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "");
    // no-cache: stored, but revalidated before every use.
    let target = "/etag?cc=no-cache&etag=%22v1%22";
    let first = get(&server, target);
    assert_eq!(first.status, 200);
    let second = get(&server, target);
    assert_eq!(second.status, 200);
    assert_eq!(
        origin.count("/etag"),
        2,
        "the second request was revalidated"
    );
    // The origin answered 304 and the stored body (from the first fill) was served.
    assert_eq!(second.body, first.body, "{second:?}");
    assert!(status_of(&second).contains("fwd-status=304"), "{second:?}");
    // A client that has the representation gets its own 304.
    let mine = request(&server, "GET", target, "If-None-Match: \"v1\"\r\n");
    assert_eq!(mine.status, 304, "{mine:?}");
    assert_eq!(origin.count("/etag"), 3);
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "");
    let target = "/swr?cc=max-age%3D1%2C+stale-while-revalidate%3D60";
    let first = get(&server, target);
    assert!(first.text().starts_with("/swr #1"), "{first:?}");
    // Wait for the stored response to become stale (its max-age is one second).
    std::thread::sleep(Duration::from_millis(2100));
    let stale = get(&server, target);
    assert_eq!(stale.body, first.body, "the stale copy answers: {stale:?}");
    assert!(
        status_of(&stale).contains("detail=stale-while-revalidate"),
        "{stale:?}"
    );
    origin.wait_count("/swr", 2);
    // The refresh stored the new response.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(&server, target);
        if r.text().starts_with("/swr #2") {
            assert!(is_hit(&r), "{r:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refresh was not stored: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(origin.count("/swr"), 2);
}

#[test]
fn stale_if_error_answers_while_the_origin_is_down() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "");
    let target = "/sie?cc=max-age%3D1%2C+stale-if-error%3D60";
    let first = get(&server, target);
    assert_eq!(first.status, 200);
    let plain = "/plain?cc=max-age%3D1";
    assert_eq!(get(&server, plain).status, 200);
    std::thread::sleep(Duration::from_millis(2100));
    origin.set_down(true);
    let r = get(&server, target);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, first.body);
    assert!(status_of(&r).contains("detail=stale-if-error"), "{r:?}");
    // Without stale-if-error, the error goes through.
    let r = get(&server, plain);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(status_of(&r).contains("detail=upstream-error"), "{r:?}");
    // Never stored and the origin down: a clear 502.
    let r = get(&server, "/never?cc=max-age%3D60");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("502 Bad Gateway"), "{r:?}");
    origin.set_down(false);
    assert_eq!(get(&server, "/never?cc=max-age%3D60").status, 200);
}

#[test]
fn concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start();
    let server = Arc::new(cached_proxy(origin.addr, ""));
    let target = "/collapse?cc=max-age%3D60&delay=500";
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || get(&server, target))
        })
        .collect();
    let answers: Vec<Response> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    for r in &answers {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "/collapse #1 lang=-", "{r:?}");
    }
    assert_eq!(
        origin.count("/collapse"),
        1,
        "one request reached the origin"
    );
    let collapsed = answers
        .iter()
        .filter(|r| status_of(r).contains("collapsed") || is_hit(r))
        .count();
    assert!(collapsed >= 99, "{collapsed} answers shared the leader's");
}

#[test]
fn purge_from_an_allowed_address_and_refused_from_others() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "purge_allow = [\"127.0.0.0/8\"]");
    let target = "/purge?cc=max-age%3D60";
    get(&server, target);
    assert!(is_hit(&get(&server, target)));
    let r = request(&server, "PURGE", target, "");
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&server, target);
    assert!(!is_hit(&r), "purged: {r:?}");
    assert_eq!(origin.count("/purge"), 2);
    let r = request(&server, "PURGE", "/not-stored", "");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(origin.count("/not-stored"), 0, "PURGE never goes upstream");

    let other = cached_proxy(origin.addr, "purge_allow = [\"10.0.0.0/8\"]");
    let target = "/refused?cc=max-age%3D60";
    get(&other, target);
    let r = request(&other, "PURGE", target, "");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("PURGE is not allowed"), "{r:?}");
    assert!(is_hit(&get(&other, target)), "still stored");
}

#[test]
fn unsafe_methods_invalidate_and_large_bodies_pass_through() {
    let origin = Origin::start();
    let server = cached_proxy(origin.addr, "max_object_size = \"1KiB\"");
    let target = "/doc?cc=max-age%3D60";
    get(&server, target);
    assert!(is_hit(&get(&server, target)));
    let r = request(&server, "POST", target, "Content-Length: 2\r\n\r\nhi");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!is_hit(&get(&server, target)), "the POST invalidated it");
    assert_eq!(origin.count("/doc"), 3);

    // Larger than max_object_size: passed through intact, never stored.
    let big = "/big?cc=max-age%3D60&len=100000";
    for _ in 0..2 {
        let r = get(&server, big);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 100_000);
        assert!(
            r.body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == b'a' + (i % 26) as u8)
        );
        assert!(!is_hit(&r), "{:?}", r.headers);
    }
    assert_eq!(origin.count("/big"), 2);

    // HEAD is answered from a stored GET; a HEAD miss fills the cache.
    let mut conn = server.connect();
    conn.send(b"HEAD /head?cc=max-age%3D60 HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let r = conn.read_head_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    let r = get(&server, "/head?cc=max-age%3D60");
    assert!(is_hit(&r), "{r:?}");
    assert_eq!(origin.count("/head"), 1);

    // Hostile requests get clear answers and the cache keeps serving.
    let mut conn = Conn::open(server.addr());
    let r = conn.request(
        "GET /hostile?cc=max-age%3D60 HTTP/1.1\r\nHost: cache.test\r\n\
         Cache-Control: max-age=banana, only-if-cached=\"\r\n\r\n",
    );
    assert!(r.status == 200 || r.status == 504, "{r:?}");
    let r = request(&server, "PURGE", "/x", "Content-Length: 3\r\n\r\nabc");
    assert!(r.status == 404 || r.status == 200, "{r:?}");
    assert!(
        is_hit(&get(&server, target)),
        "still serving from the cache"
    );
}

#[test]
fn the_disk_tier_survives_a_restart() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().expect("cache dir");
    let cache = format!("disk_dir = {}", toml_path(dir.path()));
    let target = "/disk?cc=max-age%3D300";
    let first = {
        let server = cached_proxy(origin.addr, &cache);
        let r = get(&server, target);
        assert_eq!(r.status, 200);
        assert!(is_hit(&get(&server, target)));
        r
    };
    let server = cached_proxy(origin.addr, &cache);
    let r = get(&server, target);
    assert!(is_hit(&r), "from the disk tier after a restart: {r:?}");
    assert_eq!(r.body, first.body);
    assert_eq!(origin.count("/disk"), 1);
}

#[test]
fn metrics_count_hits_misses_and_stores() {
    let origin = Origin::start();
    let toml =
        config(origin.addr, "") + "\n[[vhost.location]]\npath = \"/metrics\"\nmetrics = true\n";
    let server = Server::run_config(&toml).start();
    let first = get(&server, "/m?cc=max-age%3D60");
    assert!(status_of(&first).contains("fwd=uri-miss"), "{first:?}");
    assert!(is_hit(&get(&server, "/m?cc=max-age%3D60")));
    assert!(is_hit(&get(&server, "/m?cc=max-age%3D60")));
    // Not a cached location: not counted.
    assert_eq!(get(&server, "/uncached/x").status, 200);

    let text = get(&server, "/metrics").text();
    let sample = |series: &str| metric(&text, series);
    let result = |r: &str| {
        sample(&format!(
            "switchyard_cache_responses_total{{result=\"{r}\"}}"
        ))
    };
    assert_eq!(result("uri-miss"), 1, "{text}");
    assert_eq!(result("hit"), 2, "{text}");
    assert_eq!(result("stale"), 0, "{text}");
    assert_eq!(sample("switchyard_cache_stored_total"), 1, "{text}");
    assert_eq!(origin.count("/m"), 1);
}
