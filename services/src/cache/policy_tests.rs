//! The RFC 9111 rules as tables: each row a message and the decision it must produce.

#![allow(clippy::type_complexity)] // the row types of the tables

use super::*;
use std::time::Duration;

/// A fixed origin for all times in these tests: T(n) is n seconds after it.
fn t(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n)
}

fn date(n: u64) -> String {
    httpdate::fmt_http_date(t(n))
}

fn headers(fields: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in fields {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

fn cc(value: &str) -> CacheControl {
    CacheControl::parse(&headers(&[("cache-control", value)]))
}

#[test]
fn storable_table() {
    use NotStorable::*;
    let cases: &[(
        &str,
        &[(&str, &str)],
        u16,
        &[(&str, &str)],
        Result<(), NotStorable>,
    )] = &[
        ("GET", &[], 200, &[], Ok(())),
        ("GET", &[], 200, &[("cache-control", "max-age=60")], Ok(())),
        (
            "HEAD",
            &[],
            200,
            &[("cache-control", "max-age=60")],
            Err(Method),
        ),
        (
            "POST",
            &[],
            200,
            &[("cache-control", "max-age=60")],
            Err(Method),
        ),
        (
            "GET",
            &[],
            206,
            &[("cache-control", "max-age=60")],
            Err(Status),
        ),
        ("GET", &[], 304, &[], Err(Status)),
        (
            "GET",
            &[],
            200,
            &[("cache-control", "no-store, max-age=9")],
            Err(NoStore),
        ),
        (
            "GET",
            &[("cache-control", "no-store")],
            200,
            &[],
            Err(NoStore),
        ),
        (
            "GET",
            &[],
            200,
            &[("cache-control", "private, max-age=9")],
            Err(Private),
        ),
        (
            "GET",
            &[("authorization", "Basic eDp5")],
            200,
            &[("cache-control", "max-age=9")],
            Err(Authorization),
        ),
        (
            "GET",
            &[("authorization", "Basic eDp5")],
            200,
            &[("cache-control", "public, max-age=9")],
            Ok(()),
        ),
        (
            "GET",
            &[("authorization", "Basic eDp5")],
            200,
            &[("cache-control", "s-maxage=9")],
            Ok(()),
        ),
        (
            "GET",
            &[("authorization", "Basic eDp5")],
            200,
            &[("cache-control", "must-revalidate")],
            Ok(()),
        ),
        (
            "GET",
            &[],
            200,
            &[("set-cookie", "a=b"), ("cache-control", "max-age=9")],
            Err(SetCookie),
        ),
        ("GET", &[], 200, &[("vary", "Accept, *")], Err(VaryStar)),
        ("GET", &[], 200, &[("vary", "Accept-Encoding")], Ok(())),
        // Not heuristically cacheable without an explicit lifetime.
        ("GET", &[], 302, &[], Err(NoFreshness)),
        ("GET", &[], 500, &[], Err(NoFreshness)),
        ("GET", &[], 302, &[("cache-control", "max-age=5")], Ok(())),
        ("GET", &[], 500, &[("expires", "0")], Ok(())),
        ("GET", &[], 302, &[("cache-control", "public")], Ok(())),
        ("GET", &[], 404, &[], Ok(())),
        ("GET", &[], 301, &[], Ok(())),
    ];
    for (method, req, status, resp, want) in cases {
        let req = headers(req);
        let resp = headers(resp);
        let got = storable(
            &method.parse().unwrap(),
            &req,
            &CacheControl::parse(&req),
            StatusCode::from_u16(*status).unwrap(),
            &resp,
            &CacheControl::parse(&resp),
        );
        assert_eq!(got, *want, "{method} {req:?} -> {status} {resp:?}");
    }
}

#[test]
fn freshness_lifetime_table() {
    let rules = Rules {
        default_ttl: Duration::from_secs(7),
        heuristic_max_ttl: Duration::from_secs(3600),
    };
    let no_heuristic = Rules {
        default_ttl: Duration::ZERO,
        heuristic_max_ttl: Duration::ZERO,
    };
    let d0 = date(0);
    let cases: Vec<(u16, Vec<(&str, String)>, Rules, u64)> = vec![
        // s-maxage > max-age > Expires > heuristic > default.
        (
            200,
            vec![
                ("cache-control", "s-maxage=5, max-age=50".into()),
                ("expires", date(500)),
            ],
            rules,
            5,
        ),
        (
            200,
            vec![
                ("cache-control", "max-age=50".into()),
                ("expires", date(500)),
            ],
            rules,
            50,
        ),
        (
            200,
            vec![("date", d0.clone()), ("expires", date(500))],
            rules,
            500,
        ),
        // Expires in the past, or invalid ("0"): already expired.
        (
            200,
            vec![("date", d0.clone()), ("expires", date(0))],
            rules,
            0,
        ),
        (
            200,
            vec![("date", d0.clone()), ("expires", "0".into())],
            rules,
            0,
        ),
        // No Date: the response time stands in (t(0) in these cases).
        (200, vec![("expires", date(30))], rules, 30),
        // Heuristic: 10 % of Date - Last-Modified, capped.
        (
            200,
            vec![("date", date(1000)), ("last-modified", date(0))],
            rules,
            100,
        ),
        (
            200,
            vec![("date", date(1_000_000)), ("last-modified", date(0))],
            rules,
            3600,
        ),
        (
            200,
            vec![("date", date(1000)), ("last-modified", date(0))],
            no_heuristic,
            0,
        ),
        // Default for heuristically cacheable statuses without anything else.
        (200, vec![], rules, 7),
        (404, vec![], rules, 7),
        (302, vec![], rules, 0),
        (
            302,
            vec![("date", date(1000)), ("last-modified", date(0))],
            rules,
            0,
        ),
    ];
    for (status, fields, rules, want) in cases {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let h = headers(&fields);
        let got = freshness_lifetime(
            StatusCode::from_u16(status).unwrap(),
            &h,
            &CacheControl::parse(&h),
            t(0),
            &rules,
        );
        assert_eq!(got, want, "{status} {fields:?}");
    }
}

#[test]
fn age_calculation_table() {
    // (Age header, Date, request time, response time, now, current age): RFC 9111 §4.2.3.
    let cases: &[(Option<&str>, Option<u64>, u64, u64, u64, u64)] = &[
        (None, Some(100), 100, 100, 100, 0),
        (None, Some(100), 100, 100, 130, 30),
        // Upstream's clock is behind: apparent_age = response_time - date.
        (None, Some(90), 100, 100, 100, 10),
        // Upstream's clock is ahead: apparent_age clamps to 0.
        (None, Some(200), 100, 100, 100, 0),
        // Age header plus the round trip.
        (Some("20"), Some(100), 98, 100, 100, 22),
        (Some("20"), Some(100), 98, 100, 110, 32),
        // The larger of apparent and corrected age wins.
        (Some("1"), Some(50), 100, 100, 100, 50),
        // Invalid Age counts as 0; no Date uses the response time.
        (Some("x"), None, 100, 100, 105, 5),
    ];
    for &(age, date_at, req, resp, now, want) in cases {
        let mut fields = vec![];
        let d = date_at.map(date);
        if let Some(age) = age {
            fields.push(("age", age));
        }
        if let Some(d) = &d {
            fields.push(("date", d.as_str()));
        }
        let f = Freshness::new(
            StatusCode::OK,
            &headers(&fields),
            t(req),
            t(resp),
            &Rules::default(),
        );
        assert_eq!(
            f.current_age(t(now)),
            want,
            "{age:?} {date_at:?} {req} {resp} {now}"
        );
    }
}

/// A stored response with `cache_control`, `Date` = stored at t(0), evaluated at t(now).
fn verdict(cache_control: &str, request: &str, now: u64) -> Verdict {
    let d = date(0);
    let h = headers(&[("cache-control", cache_control), ("date", &d)]);
    let f = Freshness::new(StatusCode::OK, &h, t(0), t(0), &Rules::default());
    f.evaluate(&cc(request), t(now))
}

#[test]
fn evaluation_table() {
    use Fwd::*;
    use Verdict::*;
    let reval = |fwd, stale_on_error| Revalidate {
        fwd,
        stale_on_error,
    };
    let cases: &[(&str, &str, u64, Verdict)] = &[
        // Fresh and stale by max-age.
        ("max-age=60", "", 0, Serve),
        ("max-age=60", "", 59, Serve),
        ("max-age=60", "", 60, reval(Stale, false)),
        // Request no-cache / max-age / min-fresh force revalidation of a fresh response.
        ("max-age=60", "no-cache", 10, reval(Request, false)),
        ("max-age=60", "max-age=5", 10, reval(Request, false)),
        ("max-age=60", "max-age=10", 10, Serve),
        ("max-age=60", "max-age=0", 100, reval(Stale, false)),
        ("max-age=60", "min-fresh=30", 20, Serve),
        ("max-age=60", "min-fresh=30", 31, reval(Request, false)),
        // Response no-cache: always revalidate.
        ("max-age=60, no-cache", "", 0, reval(Stale, false)),
        // max-stale lets a client accept stale responses...
        ("max-age=60", "max-stale", 1000, Serve),
        ("max-age=60", "max-stale=10", 70, Serve),
        ("max-age=60", "max-stale=10", 71, reval(Stale, false)),
        // ...unless the origin forbids it.
        (
            "max-age=60, must-revalidate",
            "max-stale",
            61,
            reval(Stale, false),
        ),
        (
            "max-age=60, proxy-revalidate",
            "max-stale",
            61,
            reval(Stale, false),
        ),
        ("s-maxage=60", "max-stale", 61, reval(Stale, false)),
        // stale-while-revalidate: serve and refresh within the window.
        (
            "max-age=60, stale-while-revalidate=30",
            "",
            60,
            ServeStaleAndRefresh,
        ),
        (
            "max-age=60, stale-while-revalidate=30",
            "",
            90,
            ServeStaleAndRefresh,
        ),
        (
            "max-age=60, stale-while-revalidate=30",
            "",
            91,
            reval(Stale, false),
        ),
        (
            "s-maxage=60, stale-while-revalidate=30",
            "",
            70,
            ServeStaleAndRefresh,
        ),
        (
            "max-age=60, stale-while-revalidate=30, must-revalidate",
            "",
            70,
            reval(Stale, false),
        ),
        (
            "max-age=60, stale-while-revalidate=30",
            "no-cache",
            70,
            reval(Stale, false),
        ),
        // stale-if-error: revalidate, but the stale response may answer an error.
        (
            "max-age=60, stale-if-error=100",
            "",
            100,
            reval(Stale, true),
        ),
        (
            "max-age=60, stale-if-error=100",
            "",
            160,
            reval(Stale, true),
        ),
        (
            "max-age=60, stale-if-error=100",
            "",
            161,
            reval(Stale, false),
        ),
        ("max-age=60", "stale-if-error=100", 100, reval(Stale, true)),
        (
            "max-age=60, stale-if-error=100, must-revalidate",
            "",
            100,
            reval(Stale, false),
        ),
        (
            "max-age=60, stale-if-error=100",
            "no-cache",
            10,
            reval(Request, true),
        ),
        // Both windows: SWR first, then SIE.
        (
            "max-age=10, stale-while-revalidate=10, stale-if-error=100",
            "",
            15,
            ServeStaleAndRefresh,
        ),
        (
            "max-age=10, stale-while-revalidate=10, stale-if-error=100",
            "",
            50,
            reval(Stale, true),
        ),
    ];
    for &(response, request, now, want) in cases {
        assert_eq!(
            verdict(response, request, now),
            want,
            "{response:?} / {request:?} at {now}"
        );
    }
}

#[test]
fn ttl_and_freshness() {
    let d = date(0);
    let h = headers(&[("cache-control", "max-age=60"), ("date", &d), ("age", "10")]);
    let f = Freshness::new(StatusCode::OK, &h, t(0), t(0), &Rules::default());
    assert_eq!(f.ttl(t(0)), 50);
    assert!(f.is_fresh(t(49)));
    assert!(!f.is_fresh(t(50)));
    assert_eq!(f.ttl(t(70)), -20);
}

#[test]
fn cache_status_members() {
    let cases = [
        (
            CacheStatus {
                hit: true,
                ttl: Some(30),
                ..Default::default()
            },
            "switchyard; hit; ttl=30",
        ),
        (
            CacheStatus {
                fwd: Some(Fwd::UriMiss),
                fwd_status: Some(200),
                stored: true,
                ttl: Some(60),
                ..Default::default()
            },
            "switchyard; fwd=uri-miss; fwd-status=200; ttl=60; stored",
        ),
        (
            CacheStatus {
                fwd: Some(Fwd::VaryMiss),
                fwd_status: Some(200),
                collapsed: true,
                ..Default::default()
            },
            "switchyard; fwd=vary-miss; fwd-status=200; collapsed",
        ),
        (
            CacheStatus {
                hit: true,
                fwd: Some(Fwd::Stale),
                fwd_status: Some(503),
                ttl: Some(-5),
                detail: Some("stale-if-error"),
                ..Default::default()
            },
            "switchyard; hit; fwd=stale; fwd-status=503; ttl=-5; detail=stale-if-error",
        ),
    ];
    for (status, want) in cases {
        assert_eq!(status.member(), want);
    }
    // Appended after the upstream caches' members.
    let mut h = headers(&[("cache-status", "origin-cache; hit")]);
    CacheStatus {
        hit: true,
        ..Default::default()
    }
    .append_to(&mut h);
    assert_eq!(h["cache-status"], "origin-cache; hit, switchyard; hit");
}

#[test]
fn vary_and_keys() {
    assert_eq!(vary_names(&headers(&[])), Some(vec![]));
    assert_eq!(
        vary_names(&headers(&[
            ("vary", "User-Agent, accept-encoding"),
            ("vary", "Accept-Encoding")
        ])),
        Some(vec![
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("user-agent")
        ])
    );
    assert_eq!(vary_names(&headers(&[("vary", "*")])), None);
    let vary = vary_names(&headers(&[("vary", "accept-encoding, accept-language")])).unwrap();
    let a = secondary_key(&vary, &headers(&[("accept-encoding", "gzip,br")]));
    let b = secondary_key(&vary, &headers(&[("accept-encoding", "gzip, br")]));
    let c = secondary_key(&vary, &headers(&[("accept-encoding", "gzip")]));
    let d = secondary_key(
        &vary,
        &headers(&[("accept-encoding", "gzip,br"), ("accept-language", "fr")]),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
    assert_eq!(secondary_key(&[], &headers(&[("accept", "x")])), "");
    assert_eq!(
        base_key("https", "Example.COM:8443", "/a/b", Some("x=1")),
        "https://example.com:8443/a/b?x=1"
    );
    assert_eq!(base_key("http", "h", "/", None), "http://h/");
}

#[test]
fn revalidation_request() {
    let stored = headers(&[("etag", "\"v1\""), ("last-modified", &date(0))]);
    let client = headers(&[
        ("accept", "text/html"),
        ("if-none-match", "\"client\""),
        ("range", "bytes=0-1"),
    ]);
    let h = revalidation_headers(&client, &stored).unwrap();
    assert_eq!(h["if-none-match"], "\"v1\"");
    assert_eq!(h["if-modified-since"], date(0).as_str());
    assert_eq!(h["accept"], "text/html");
    assert!(!h.contains_key("range"));
    assert_eq!(revalidation_headers(&client, &headers(&[])), None);
    let fill = fill_request_headers(&client);
    assert!(!fill.contains_key("if-none-match"));
    assert_eq!(fill["accept"], "text/html");
}

#[test]
fn merging_a_304() {
    let mut stored = headers(&[
        ("etag", "\"v1\""),
        ("content-length", "5"),
        ("cache-control", "max-age=1"),
        ("x-kept", "yes"),
    ]);
    let not_modified = headers(&[
        ("etag", "\"v1\""),
        ("cache-control", "max-age=100"),
        ("content-length", "0"),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("x-new", "a"),
        ("x-new", "b"),
    ]);
    assert!(merge_not_modified(&mut stored, &not_modified));
    assert_eq!(stored["cache-control"], "max-age=100");
    assert_eq!(stored["content-length"], "5");
    assert_eq!(stored["x-kept"], "yes");
    assert!(!stored.contains_key("x-hop"));
    assert!(!stored.contains_key("connection"));
    let new: Vec<_> = stored.get_all("x-new").iter().collect();
    assert_eq!(new, ["a", "b"]);
    // A 304 for another representation changes nothing.
    let mut stored2 = headers(&[("etag", "\"v1\""), ("cache-control", "max-age=1")]);
    let other = headers(&[("etag", "\"v2\""), ("cache-control", "max-age=100")]);
    assert!(!merge_not_modified(&mut stored2, &other));
    assert_eq!(stored2["cache-control"], "max-age=1");
    // Weak and strong forms of the same tag match.
    let mut stored3 = headers(&[("etag", "W/\"v1\"")]);
    assert!(merge_not_modified(
        &mut stored3,
        &headers(&[("etag", "\"v1\"")])
    ));
}

#[test]
fn unsafe_methods_invalidate() {
    let cases = [
        ("POST", 200, true),
        ("PUT", 201, true),
        ("DELETE", 204, true),
        ("PATCH", 303, true),
        ("POST", 404, false),
        ("POST", 500, false),
        ("GET", 200, false),
        ("HEAD", 200, false),
        ("OPTIONS", 200, false),
    ];
    for (method, status, want) in cases {
        let got = invalidates(
            &method.parse().unwrap(),
            StatusCode::from_u16(status).unwrap(),
        );
        assert_eq!(got, want, "{method} {status}");
    }
    let h = headers(&[
        ("location", "/items/7"),
        ("content-location", "https://other.test/x"),
    ]);
    assert_eq!(
        invalidated_locations(&h, "https", "Shop.test"),
        ["https://shop.test/items/7"]
    );
    let h = headers(&[
        ("location", "https://SHOP.test/a"),
        ("content-location", "//evil/x"),
    ]);
    assert_eq!(
        invalidated_locations(&h, "https", "shop.test"),
        ["https://shop.test/a"]
    );
}

#[test]
fn client_preconditions_on_served_responses() {
    let stored = headers(&[("etag", "\"v1\""), ("last-modified", &date(100))]);
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[], false),
        (&[("if-none-match", "\"v1\"")], true),
        (&[("if-none-match", "\"x\", W/\"v1\"")], true),
        (&[("if-none-match", "*")], true),
        (&[("if-none-match", "\"x\"")], false),
        // An entity-tag may hold a comma; `*` inside a list is an error, not a wildcard.
        (&[("if-none-match", "\"v1,x\"")], false),
        (&[("if-none-match", "\"x\", *")], false),
        // If-None-Match takes precedence over If-Modified-Since.
        (
            &[
                ("if-none-match", "\"x\""),
                ("if-modified-since", "Thu, 01 Jan 2099 00:00:00 GMT"),
            ],
            false,
        ),
        (
            &[("if-modified-since", "Thu, 01 Jan 2099 00:00:00 GMT")],
            true,
        ),
        (
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            false,
        ),
        (&[("if-modified-since", "garbage")], false),
    ];
    let untagged = headers(&[("last-modified", &date(100))]);
    assert!(client_not_modified(
        &headers(&[("if-none-match", "*")]),
        &untagged
    ));
    assert!(!client_not_modified(
        &headers(&[("if-none-match", "\"v1\"")]),
        &untagged
    ));
    for (req, want) in cases {
        assert_eq!(
            client_not_modified(&headers(req), &stored),
            *want,
            "{req:?}"
        );
    }
    let h = not_modified_headers(&headers(&[
        ("etag", "\"v1\""),
        ("content-type", "text/plain"),
        ("cache-control", "max-age=5"),
    ]));
    assert_eq!(h.len(), 2);
    assert!(!h.contains_key("content-type"));
}
