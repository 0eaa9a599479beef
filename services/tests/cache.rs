//! The cache as the proxy drives it: `CacheLayer::handle` with a scripted origin in place of the
//! upstream, and a manual clock. Covers the RFC 9111 cases end to end, revalidation, SWR, SIE,
//! collapsed forwarding, PURGE, invalidation and the disk tier across a restart.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use switchyard_conf::{CacheConfig, DiskTier};
use switchyard_services::cache::{CacheLayer, Forwarded, Served, Store, UpstreamResponse};
use switchyard_services::{Body, Request, Response};
use tokio::sync::watch;

/// Seconds since an arbitrary origin; the cache's clock.
#[derive(Clone, Default)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + self.0.load(Ordering::SeqCst))
    }
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

type Script = Box<dyn Fn(&Request, SystemTime) -> Forwarded>;

/// The upstream: answers with `script`, records what it was asked, and can be held shut.
struct Origin {
    clock: ManualClock,
    script: RefCell<Script>,
    calls: RefCell<Vec<(Method, HeaderMap)>>,
    /// While `false`, forwards wait (to keep a request in flight).
    gate: watch::Receiver<bool>,
}

struct Harness {
    clock: ManualClock,
    origin: Rc<Origin>,
    layer: CacheLayer,
    open: watch::Sender<bool>,
}

fn config() -> CacheConfig {
    CacheConfig {
        enabled: true,
        max_object_size: 1000,
        ..CacheConfig::default()
    }
}

impl Harness {
    fn new(cfg: CacheConfig) -> Harness {
        let clock = ManualClock::default();
        let store = Store::open(&cfg).unwrap();
        let c = clock.clone();
        let layer = CacheLayer::with_clock(&cfg, store, Arc::new(move || c.at()));
        let (open, gate) = watch::channel(true);
        let origin = Rc::new(Origin {
            clock: clock.clone(),
            script: RefCell::new(Box::new(|_, now| ok(now, "max-age=60", "hello"))),
            calls: RefCell::new(Vec::new()),
            gate,
        });
        Harness {
            clock,
            origin,
            layer,
            open,
        }
    }

    fn script(&self, f: impl Fn(&Request, SystemTime) -> Forwarded + 'static) {
        *self.origin.script.borrow_mut() = Box::new(f);
    }

    fn calls(&self) -> usize {
        self.origin.calls.borrow().len()
    }

    fn forward(&self) -> impl Fn(Request) -> Pin<Box<dyn Future<Output = Forwarded>>> + 'static {
        let origin = self.origin.clone();
        move |req: Request| {
            let origin = origin.clone();
            Box::pin(async move {
                origin
                    .calls
                    .borrow_mut()
                    .push((req.method.clone(), req.headers.clone()));
                let mut gate = origin.gate.clone();
                let _ = gate.wait_for(|open| *open).await;
                let now = origin.clock.at();
                (origin.script.borrow())(&req, now)
            })
        }
    }

    /// The layer's answer, its fields in one map as a client sees them (a hit sends most
    /// of them as a shared set).
    async fn send(&self, req: Request) -> Served {
        let mut served = self.layer.handle(req, self.forward()).await;
        served.response.unshare();
        served
    }

    /// GET `path` with `headers`; the response (any background refresh is run to completion).
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let served = self.send(request(Method::GET, path, headers)).await;
        if let Some(refresh) = served.refresh {
            refresh.await;
        }
        served.response
    }
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method,
        path: path.to_owned(),
        query: None,
        version: Version::HTTP_11,
        host: Some("shop.test".to_owned()),
        headers: header_map(headers),
        scheme: "http",
        peer: "127.0.0.1:40000".parse().unwrap(),
        body: Bytes::new(),
        stream: None,
    }
}

fn header_map(fields: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in fields {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

fn response(status: u16, now: SystemTime, fields: &[(&str, &str)], body: &str) -> Forwarded {
    let mut headers = header_map(fields);
    headers.insert(
        "date",
        HeaderValue::from_str(&httpdate::fmt_http_date(now)).unwrap(),
    );
    Forwarded::Complete(UpstreamResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body.to_owned()),
    })
}

fn ok(now: SystemTime, cache_control: &str, body: &str) -> Forwarded {
    response(
        200,
        now,
        &[("cache-control", cache_control), ("etag", "\"v1\"")],
        body,
    )
}

fn cache_status(r: &Response) -> &str {
    r.headers
        .get("cache-status")
        .map_or("", |v| v.to_str().unwrap())
}

fn body(r: &Response) -> &[u8] {
    match &r.body {
        Body::Bytes(b) => b,
        Body::Empty => b"",
        other => panic!("unexpected body {other:?}"),
    }
}

#[tokio::test]
async fn miss_then_hit_with_age_and_cache_status() {
    let h = Harness::new(config());
    let first = h.get("/a", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(body(&first), b"hello");
    assert_eq!(
        cache_status(&first),
        "switchyard; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    );
    h.clock.advance(10);
    let second = h.get("/a", &[]).await;
    assert_eq!(body(&second), b"hello");
    assert_eq!(cache_status(&second), "switchyard; hit; ttl=50");
    assert_eq!(second.headers["age"], "10");
    assert!(!second.headers.contains_key("content-length"));
    // HEAD is answered from the GET entry.
    let head = h.send(request(Method::HEAD, "/a", &[])).await.response;
    assert_eq!(cache_status(&head), "switchyard; hit; ttl=50");
    assert_eq!(h.calls(), 1);
}

/// One row: what the origin answers, the request, and what the second identical request sees.
struct Case {
    name: &'static str,
    response: &'static [(&'static str, &'static str)],
    status: u16,
    request: &'static [(&'static str, &'static str)],
    /// The first response's Cache-Status.
    first: &'static str,
    /// Whether the second request is a hit.
    second_hit: bool,
}

#[tokio::test]
async fn table_of_cache_cases() {
    let cases = [
        Case {
            name: "max-age",
            response: &[("cache-control", "max-age=60")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; ttl=60; stored",
            second_hit: true,
        },
        Case {
            name: "s-maxage wins over max-age",
            response: &[("cache-control", "max-age=1, s-maxage=30")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; ttl=30; stored",
            second_hit: true,
        },
        Case {
            name: "no-store",
            response: &[("cache-control", "no-store, max-age=60")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; detail=no-store",
            second_hit: false,
        },
        Case {
            name: "private",
            response: &[("cache-control", "private, max-age=60")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; detail=private",
            second_hit: false,
        },
        Case {
            name: "authorization without public",
            response: &[("cache-control", "max-age=60")],
            status: 200,
            request: &[("authorization", "Bearer x")],
            first: "switchyard; fwd=uri-miss; fwd-status=200; detail=authorization",
            second_hit: false,
        },
        Case {
            name: "authorization with public",
            response: &[("cache-control", "public, max-age=60")],
            status: 200,
            request: &[("authorization", "Bearer x")],
            first: "switchyard; fwd=uri-miss; fwd-status=200; ttl=60; stored",
            second_hit: true,
        },
        Case {
            name: "vary star",
            response: &[("cache-control", "max-age=60"), ("vary", "*")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; detail=vary-star",
            second_hit: false,
        },
        Case {
            name: "no-cache response is stored but revalidated",
            response: &[("cache-control", "no-cache, max-age=60")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; ttl=60; stored",
            second_hit: false,
        },
        Case {
            name: "404 heuristically cacheable, default ttl 0: stored, stale",
            response: &[],
            status: 404,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=404; ttl=0; stored",
            second_hit: false,
        },
        Case {
            name: "500 without freshness",
            response: &[],
            status: 500,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=500; detail=no-freshness",
            second_hit: false,
        },
        Case {
            name: "expires",
            response: &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")],
            status: 200,
            request: &[],
            first: "stored",
            second_hit: true,
        },
        Case {
            name: "request no-store",
            response: &[("cache-control", "max-age=60")],
            status: 200,
            request: &[("cache-control", "no-store")],
            first: "switchyard; fwd=uri-miss; fwd-status=200; detail=no-store",
            second_hit: false,
        },
        Case {
            name: "set-cookie",
            response: &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
            status: 200,
            request: &[],
            first: "switchyard; fwd=uri-miss; fwd-status=200; detail=set-cookie",
            second_hit: false,
        },
    ];
    for case in cases {
        let h = Harness::new(config());
        let fields = case.response;
        let status = case.status;
        h.script(move |_, now| response(status, now, fields, "x"));
        let first = h.get("/t", case.request).await;
        assert!(
            cache_status(&first).ends_with(case.first),
            "{}: {}",
            case.name,
            cache_status(&first)
        );
        h.clock.advance(1);
        let second = h.get("/t", case.request).await;
        let hit = cache_status(&second).starts_with("switchyard; hit");
        assert_eq!(
            hit,
            case.second_hit,
            "{}: {}",
            case.name,
            cache_status(&second)
        );
        assert_eq!(
            h.calls(),
            if case.second_hit { 1 } else { 2 },
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn vary_selects_variants() {
    let h = Harness::new(config());
    h.script(|req, now| {
        let enc = req
            .headers
            .get("accept-encoding")
            .map_or("identity".to_owned(), |v| v.to_str().unwrap().to_owned());
        response(
            200,
            now,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
            &enc,
        )
    });
    let gz = h.get("/v", &[("accept-encoding", "gzip")]).await;
    assert_eq!(body(&gz), b"gzip");
    let br = h.get("/v", &[("accept-encoding", "br")]).await;
    assert_eq!(body(&br), b"br");
    assert!(
        cache_status(&br).contains("fwd=vary-miss"),
        "{}",
        cache_status(&br)
    );
    let gz2 = h.get("/v", &[("accept-encoding", "gzip")]).await;
    assert_eq!(body(&gz2), b"gzip");
    assert!(cache_status(&gz2).contains("hit"));
    let br2 = h.get("/v", &[("accept-encoding", "br")]).await;
    assert_eq!(body(&br2), b"br");
    assert!(cache_status(&br2).contains("hit"));
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn request_directives() {
    let h = Harness::new(config());
    h.get("/r", &[]).await;
    h.clock.advance(30);
    // no-cache and max-age force a trip upstream (a revalidation).
    let r = h.get("/r", &[("cache-control", "no-cache")]).await;
    assert!(
        cache_status(&r).contains("fwd=request"),
        "{}",
        cache_status(&r)
    );
    h.clock.advance(30);
    let r = h.get("/r", &[("cache-control", "max-age=10")]).await;
    assert!(
        cache_status(&r).contains("fwd=request"),
        "{}",
        cache_status(&r)
    );
    // only-if-cached on a miss: 504 without going upstream.
    let calls = h.calls();
    let r = h
        .get("/other", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(h.calls(), calls);
    // max-stale accepts a stale entry.
    h.clock.advance(100);
    let r = h.get("/r", &[("cache-control", "max-stale=200")]).await;
    assert!(
        cache_status(&r).starts_with("switchyard; hit; ttl=-"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(h.calls(), calls);
}

#[tokio::test]
async fn revalidation_with_304_refreshes_the_entry() {
    let h = Harness::new(config());
    h.get("/e", &[]).await;
    h.clock.advance(61);
    h.script(|req, now| {
        assert_eq!(req.headers["if-none-match"], "\"v1\"");
        response(
            304,
            now,
            &[("cache-control", "max-age=120"), ("etag", "\"v1\"")],
            "",
        )
    });
    let r = h.get("/e", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"hello");
    assert_eq!(
        cache_status(&r),
        "switchyard; fwd=stale; fwd-status=304; ttl=120; stored"
    );
    assert_eq!(
        r.header("cache-control").expect("stored field"),
        "max-age=120"
    );
    // Fresh again for 120 s from the 304.
    h.clock.advance(100);
    let r = h.get("/e", &[]).await;
    assert_eq!(cache_status(&r), "switchyard; hit; ttl=20");
    assert_eq!(h.calls(), 2);
    // The client's own preconditions are answered by the cache.
    let r = h.get("/e", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn a_304_for_another_representation_refetches() {
    let h = Harness::new(config());
    h.get("/e", &[]).await;
    h.clock.advance(61);
    h.script(|req, now| {
        if req.headers.contains_key("if-none-match") {
            response(304, now, &[("etag", "\"v2\"")], "")
        } else {
            ok(now, "max-age=60", "new")
        }
    });
    let r = h.get("/e", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"new");
    assert_eq!(h.calls(), 3);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let h = Harness::new(config());
    h.script(|_, now| ok(now, "max-age=10, stale-while-revalidate=60", "v1"));
    h.get("/s", &[]).await;
    h.clock.advance(20);
    h.script(|_, now| ok(now, "max-age=10, stale-while-revalidate=60", "v2"));
    let first = h.send(request(Method::GET, "/s", &[])).await;
    let second = h.send(request(Method::GET, "/s", &[])).await;
    // Both answered at once with the stale body; only the first started a refresh.
    assert_eq!(body(&first.response), b"v1");
    assert_eq!(body(&second.response), b"v1");
    assert_eq!(
        cache_status(&first.response),
        "switchyard; hit; ttl=-10; detail=stale-while-revalidate"
    );
    assert!(second.refresh.is_none());
    assert_eq!(h.calls(), 1);
    first.refresh.expect("a refresh").await;
    assert_eq!(h.calls(), 2);
    let r = h.get("/s", &[]).await;
    assert_eq!(body(&r), b"v2");
    assert_eq!(cache_status(&r), "switchyard; hit; ttl=10");
    // Past the window: an ordinary revalidation, no stale answer.
    h.clock.advance(100);
    h.script(|_, now| ok(now, "max-age=10", "v3"));
    let r = h.get("/s", &[]).await;
    assert_eq!(body(&r), b"v3");
    assert!(
        cache_status(&r).contains("fwd=stale"),
        "{}",
        cache_status(&r)
    );
}

#[tokio::test]
async fn stale_if_error_serves_stale_on_5xx_and_upstream_failure() {
    let h = Harness::new(config());
    h.script(|_, now| ok(now, "max-age=10, stale-if-error=60", "kept"));
    h.get("/x", &[]).await;
    h.clock.advance(30);
    h.script(|_, now| response(503, now, &[], "down"));
    let r = h.get("/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"kept");
    assert_eq!(
        cache_status(&r),
        "switchyard; fwd=stale; fwd-status=503; ttl=-20; detail=stale-if-error"
    );
    h.script(|_, _| Forwarded::Failed(Response::text(StatusCode::BAD_GATEWAY, "502\n")));
    let r = h.get("/x", &[]).await;
    assert_eq!(body(&r), b"kept");
    assert!(cache_status(&r).ends_with("detail=stale-if-error"));
    // Past the window the error goes to the client.
    h.clock.advance(60);
    let r = h.get("/x", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        cache_status(&r),
        "switchyard; fwd=stale; fwd-status=502; detail=upstream-error"
    );
    h.script(|_, now| response(500, now, &[], "boom"));
    let r = h.get("/x", &[]).await;
    assert_eq!(r.status, 500);
    // The stale entry is still there (a 5xx does not replace it).
    h.script(|_, now| ok(now, "max-age=10", "back"));
    let r = h.get("/x", &[]).await;
    assert_eq!(body(&r), b"back");
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_upstream_request() {
    let h = Harness::new(config());
    h.open.send_replace(false);
    let started = Rc::new(Cell::new(0usize));
    let tasks = (0..100).map(|_| {
        let started = started.clone();
        let fut = h.send(request(Method::GET, "/hot", &[]));
        async move {
            started.set(started.get() + 1);
            fut.await
        }
    });
    let all = futures_util::future::join_all(tasks);
    let release = async {
        // Every request has reached the flight once all were polled and the leader waits.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while started.get() < 100 || h.calls() < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "requests did not start"
            );
            tokio::task::yield_now().await;
        }
        h.open.send_replace(true);
    };
    let (served, ()) = tokio::join!(all, release);
    assert_eq!(h.calls(), 1);
    let collapsed = served
        .iter()
        .filter(|s| cache_status(&s.response).ends_with("; collapsed"))
        .count();
    assert_eq!(collapsed, 99);
    assert!(served.iter().all(|s| body(&s.response) == b"hello"));
}

#[tokio::test(start_paused = true)]
async fn followers_go_upstream_themselves_after_the_lock_timeout() {
    let h = Harness::new(CacheConfig {
        lock_timeout: Duration::from_millis(200),
        ..config()
    });
    h.open.send_replace(false);
    let leader = h.send(request(Method::GET, "/slow", &[]));
    let follower = async {
        // Let the leader take the flight first.
        while h.calls() < 1 {
            tokio::task::yield_now().await;
        }
        let served = h.send(request(Method::GET, "/slow", &[]));
        let (served, ()) = tokio::join!(served, async {
            // The follower has waited out its timeout once its own forward arrives.
            while h.calls() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            h.open.send_replace(true);
        });
        served
    };
    let (leader, follower) = tokio::join!(leader, follower);
    assert_eq!(h.calls(), 2);
    assert!(!cache_status(&follower.response).contains("collapsed"));
    assert!(cache_status(&leader.response).ends_with("stored"));
}

#[tokio::test]
async fn uncacheable_responses_are_not_shared_with_followers() {
    let h = Harness::new(config());
    h.script(|_, now| response(200, now, &[("cache-control", "private")], "mine"));
    h.open.send_replace(false);
    let a = h.send(request(Method::GET, "/p", &[]));
    let b = h.send(request(Method::GET, "/p", &[]));
    let release = async {
        while h.calls() < 1 {
            tokio::task::yield_now().await;
        }
        h.open.send_replace(true);
    };
    let (a, b, ()) = tokio::join!(a, b, release);
    assert_eq!(h.calls(), 2);
    assert!(!cache_status(&a.response).contains("collapsed"));
    assert!(!cache_status(&b.response).contains("collapsed"));
}

#[tokio::test]
async fn purge_from_allowed_addresses_only() {
    let h = Harness::new(CacheConfig {
        purge_allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..config()
    });
    h.get("/p", &[]).await;
    let purge = |peer: &str| {
        let mut req = request(Method::from_bytes(b"PURGE").unwrap(), "/p", &[]);
        req.peer = peer.parse().unwrap();
        req
    };
    let denied = h.send(purge("192.0.2.1:1")).await.response;
    assert_eq!(denied.status, 403);
    assert!(cache_status(&h.get("/p", &[]).await).contains("hit"));
    let done = h.send(purge("10.1.2.3:1")).await.response;
    assert_eq!(done.status, 200);
    let again = h.send(purge("10.1.2.3:1")).await.response;
    assert_eq!(again.status, 404);
    assert!(cache_status(&h.get("/p", &[]).await).contains("fwd=uri-miss"));
    // PURGE never went upstream.
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_target_and_its_location() {
    let h = Harness::new(config());
    h.get("/items", &[]).await;
    h.get("/items/7", &[]).await;
    h.get("/other", &[]).await;
    h.script(|_, now| response(201, now, &[("location", "/items/7")], ""));
    let r = h.send(request(Method::POST, "/items", &[])).await.response;
    assert_eq!(r.status, 201);
    assert_eq!(cache_status(&r), "switchyard; fwd=method; fwd-status=201");
    h.script(|_, now| ok(now, "max-age=60", "hello"));
    assert!(cache_status(&h.get("/items", &[]).await).contains("uri-miss"));
    assert!(cache_status(&h.get("/items/7", &[]).await).contains("uri-miss"));
    assert!(cache_status(&h.get("/other", &[]).await).contains("hit"));
    // An error does not invalidate.
    h.script(|_, now| response(500, now, &[], ""));
    let r = h
        .send(request(Method::DELETE, "/other", &[]))
        .await
        .response;
    assert_eq!(r.status, 500);
    h.script(|_, now| ok(now, "max-age=60", "hello"));
    assert!(cache_status(&h.get("/other", &[]).await).contains("hit"));
}

#[tokio::test]
async fn large_bodies_are_passed_through_not_stored() {
    let h = Harness::new(config());
    let big = "x".repeat(1001);
    h.script(move |_, now| ok(now, "max-age=60", &big));
    let r = h.get("/big", &[]).await;
    assert_eq!(body(&r).len(), 1001);
    assert!(cache_status(&r).ends_with("detail=too-large"));
    // A passthrough (the proxy's streamed response) is handed on untouched.
    h.script(|_, _| Forwarded::Passthrough(Response::text(StatusCode::OK, "streamed\n")));
    let r = h.get("/big", &[]).await;
    assert_eq!(body(&r), b"streamed\n");
    assert!(cache_status(&r).ends_with("detail=too-large"));
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn memory_tier_stays_within_its_byte_bound() {
    let h = Harness::new(CacheConfig {
        memory_size: 20_000,
        ..config()
    });
    let body = "y".repeat(900);
    h.script(move |_, now| ok(now, "max-age=60", &body));
    for i in 0..100 {
        h.get(&format!("/m{i}"), &[]).await;
    }
    assert!(h.layer.store().memory_bytes() <= 20_000);
    assert!(h.layer.store().memory_bytes() > 0);
}

#[tokio::test]
async fn the_disk_tier_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CacheConfig {
        disk: Some(DiskTier {
            dir: dir.path().join("cache"),
            max_size: 1 << 20,
        }),
        ..config()
    };
    let h = Harness::new(cfg.clone());
    h.script(|req, now| {
        let enc = req
            .headers
            .get("accept-encoding")
            .map_or("none", |v| v.to_str().unwrap());
        let body = format!("body for {enc}");
        response(
            200,
            now,
            &[
                ("cache-control", "max-age=600"),
                ("vary", "accept-encoding"),
            ],
            &body,
        )
    });
    h.get("/d", &[("accept-encoding", "gzip")]).await;
    h.get("/d", &[("accept-encoding", "br")]).await;
    assert_eq!(h.calls(), 2);
    drop(h);

    // A new process: a new store on the same directory, nothing in memory.
    let h = Harness::new(cfg);
    h.clock.advance(100);
    let r = h.get("/d", &[("accept-encoding", "br")]).await;
    assert_eq!(body(&r), b"body for br");
    assert_eq!(cache_status(&r), "switchyard; hit; ttl=500");
    assert_eq!(r.headers["age"], "100");
    let r = h.get("/d", &[("accept-encoding", "gzip")]).await;
    assert_eq!(body(&r), b"body for gzip");
    assert_eq!(h.calls(), 0);
    // PURGE removes the files too.
    let mut purge = request(Method::from_bytes(b"PURGE").unwrap(), "/d", &[]);
    purge.peer = "127.0.0.1:1".parse().unwrap();
    assert_eq!(h.send(purge).await.response.status, 200);
    assert_eq!(h.layer.store().disk().unwrap().usage().0, 0);
}

#[tokio::test]
async fn head_misses_fill_with_get_and_client_preconditions_stay_here() {
    let h = Harness::new(config());
    let head = h.send(request(Method::HEAD, "/h", &[])).await.response;
    assert_eq!(head.status, 200);
    assert!(
        cache_status(&head).ends_with("stored"),
        "{}",
        cache_status(&head)
    );
    assert_eq!(h.origin.calls.borrow()[0].0, Method::GET);
    // A conditional miss is filled unconditionally, then answered 304 by the cache.
    let r = h
        .get("/c", &[("if-none-match", "\"v1\""), ("range", "bytes=0-1")])
        .await;
    assert_eq!(r.status, 304);
    assert!(cache_status(&r).ends_with("stored"));
    let (method, headers) = h.origin.calls.borrow()[1].clone();
    assert_eq!(method, Method::GET);
    assert!(!headers.contains_key("if-none-match"));
    assert!(!headers.contains_key("range"));
    // A non-matching tag gets the whole response from the cache.
    let r = h.get("/c", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"hello");
    assert_eq!(h.calls(), 2);
}
