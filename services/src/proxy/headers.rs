//! Header rewriting on the way to a member and back: hop-by-hop fields removed (RFC 9110
//! §7.6.1), `X-Forwarded-*` and `Via` added, the location's set/add/remove edits applied.
//! Pure functions over `HeaderMap`s.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use switchyard_conf::HeaderEdits;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The fields that describe one connection, never forwarded (RFC 9110 §7.6.1, plus the
/// pre-standard ones proxies still see). Header names, not strings: a lookup by string parses
/// the string every time.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const CONNECTION_AT: usize = 0;
const TE_AT: usize = 5;
const UPGRADE_AT: usize = 8;

/// The field names listed in `Connection` (RFC 9110 §7.6.1): options for this hop only,
/// which a proxy or cache removes along with `Connection` itself.
pub(crate) fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Remove hop-by-hop fields and every field the `Connection` header names. With `upgrade`
/// (a WebSocket handshake) `Upgrade` and `Connection: upgrade` stay. `TE: trailers` stays
/// (gRPC needs it on HTTP/2).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds which are present: a message usually carries none of
    // them, or only `Connection`, and only those are removed.
    let mut present = [false; 9];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    if present[CONNECTION_AT] {
        for name in connection_options(headers) {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
    }
    let te_trailers = present[TE_AT]
        && headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    let upgrade_value = if upgrade && present[UPGRADE_AT] {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for (name, present) in HOP_BY_HOP.into_iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(value) = upgrade_value {
        headers.insert(header::UPGRADE, value);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// True for an HTTP/1.1 WebSocket (or other) upgrade handshake the member should see.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Add `X-Forwarded-For` (appended to what the client sent), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and `Via`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    scheme: &str,
    host: Option<&str>,
    version: http::Version,
) {
    let client = client_address(client);
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prior}, {client}")).ok()
        }
        _ => HeaderValue::from_str(&client).ok(),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
    );
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST, v);
    }
    add_via(headers, version);
}

/// The client's address as text; IPv4 (and IPv4-mapped IPv6) without the formatting
/// machinery, which cost more than the rest of the forwarded fields together.
fn client_address(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        v6 => v6.to_string(),
    }
}

/// Append our hop to `Via` (RFC 9110 §7.6.3).
pub fn add_via(headers: &mut HeaderMap, version: http::Version) {
    headers.append(header::VIA, HeaderValue::from_static(via_hop(version)));
}

/// Our hop in `Via`, for a message received with `version`.
pub fn via_hop(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "1.0 switchyard",
        http::Version::HTTP_2 => "2 switchyard",
        http::Version::HTTP_3 => "3 switchyard",
        _ => "1.1 switchyard",
    }
}

/// Apply a location's edits: remove, then set (replace), then add (append).
pub fn apply_edits(headers: &mut HeaderMap, edits: &PreparedEdits) {
    for name in &edits.remove {
        headers.remove(name);
    }
    for (name, value) in &edits.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &edits.add {
        headers.append(name.clone(), value.clone());
    }
}

/// [`HeaderEdits`] parsed once into header types.
#[derive(Debug, Clone, Default)]
pub struct PreparedEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl PreparedEdits {
    pub fn new(edits: &HeaderEdits) -> PreparedEdits {
        let pair = |(n, v): &(String, String)| {
            Some((
                HeaderName::from_bytes(n.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        };
        PreparedEdits {
            set: edits.set.iter().filter_map(pair).collect(),
            add: edits.add.iter().filter_map(pair).collect(),
            remove: edits
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// The path sent to the member: `prefix` removed when `strip` (keeping a leading `/`), then the
/// query appended.
pub fn upstream_path(path: &str, query: Option<&str>, prefix: &str, strip: bool) -> String {
    let mut out = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    let rest = if strip {
        path.strip_prefix(prefix.trim_end_matches('/'))
            .unwrap_or(path)
    } else {
        path
    };
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers, deflate"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn upgrade_is_kept_for_websocket() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarded_fields_append() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.7")]);
        add_forwarded(
            &mut h,
            "::ffff:192.0.2.1".parse().expect("ip"),
            "https",
            Some("example.com"),
            http::Version::HTTP_11,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["via"], "1.1 switchyard");
    }

    #[test]
    fn edits_remove_set_add() {
        let mut h = map(&[("cookie", "a=1"), ("x-a", "old")]);
        let edits = PreparedEdits::new(&HeaderEdits {
            set: vec![("x-a".into(), "new".into())],
            add: vec![("x-b".into(), "1".into()), ("x-b".into(), "2".into())],
            remove: vec!["cookie".into()],
        });
        apply_edits(&mut h, &edits);
        assert!(!h.contains_key("cookie"));
        assert_eq!(h["x-a"], "new");
        assert_eq!(h.get_all("x-b").iter().count(), 2);
    }

    #[test]
    fn paths() {
        assert_eq!(
            upstream_path("/api/v1", Some("q=1"), "/api/", true),
            "/v1?q=1"
        );
        assert_eq!(upstream_path("/api", None, "/api", true), "/");
        assert_eq!(upstream_path("/api/v1", None, "/api", false), "/api/v1");
        assert_eq!(upstream_path("/apix", None, "/api", true), "/x");
    }

    #[test]
    fn cookies() {
        let h = map(&[("cookie", "a=1; sid=xyz"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "sid"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn client_addresses_read_as_std_prints_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(client_address(ip), ip.to_string());
        }
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(client_address(mapped), "192.0.2.1");
    }
}
