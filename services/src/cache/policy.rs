//! What a shared HTTP cache may store, for how long, and when it may answer (RFC 9111), as plain
//! functions of headers and times. No clock and no I/O: the caller passes `now`, the time the
//! request was sent upstream and the time the response arrived.
//!
//! Switchyard is a *shared* cache: `private` responses and responses to requests with
//! `Authorization` are not stored unless the origin says otherwise (§3.5), and `s-maxage` wins
//! over `max-age` (§4.2.1). Beyond the RFC, for safety: `206` and `304` are never stored (this
//! cache keeps whole representations only), `Vary: *` is never stored, and neither is a response
//! that sets a cookie.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, DATE, ETAG, EXPIRES, HeaderName, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
    SET_COOKIE, TE, TRANSFER_ENCODING, UPGRADE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::directives::{CacheControl, delta_seconds};

/// RFC 9211's field.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// The operator's rules that complete the RFC (`[cache]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Freshness of a response with no explicit lifetime and no `Last-Modified`.
    pub default_ttl: Duration,
    /// Cap of the `Last-Modified` heuristic; zero turns the heuristic off.
    pub heuristic_max_ttl: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            default_ttl: Duration::ZERO,
            heuristic_max_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why a response was not stored (the `detail` of `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    /// Nothing makes it cacheable: no explicit lifetime, not heuristically cacheable (§3).
    NoFreshness,
    TooLarge,
}

impl NotStorable {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NoFreshness => "no-freshness",
            NotStorable::TooLarge => "too-large",
        }
    }
}

/// Status codes "defined as heuristically cacheable" (RFC 9110 §15.1), minus 206 (not stored).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether a shared cache may store this response to this request (RFC 9111 §3).
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    req_cc: &CacheControl,
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
) -> Result<(), NotStorable> {
    // §3: "the request method is understood by the cache" — we store GET only; HEAD is answered
    // from the GET entry but its own response carries no body to store.
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    // §3: "the response status code is final" and understood; we keep whole 2xx/3xx/4xx/5xx
    // representations, never partial content nor 304.
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    // §3: "the no-store cache directive is not present in the response"; §5.2.1.5: nor in the
    // request ("a cache MUST NOT store any part of either this request or any response to it").
    if cc.no_store || req_cc.no_store {
        return Err(NotStorable::NoStore);
    }
    // §3: "if the cache is shared: the private response directive is ... not present".
    if cc.private {
        return Err(NotStorable::Private);
    }
    // §3.5: "A shared cache MUST NOT use a cached response to a request with an Authorization
    // header field ... unless ... must-revalidate, public, s-maxage".
    if req_headers.contains_key(AUTHORIZATION)
        && !(cc.public || cc.must_revalidate || cc.s_maxage.is_some())
    {
        return Err(NotStorable::Authorization);
    }
    if headers.contains_key(SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    if vary_names(headers).is_none() {
        return Err(NotStorable::VaryStar);
    }
    // §3: "the response contains at least one of: a public response directive; ... an Expires
    // header field; a max-age response directive; ... an s-maxage response directive; ... a
    // status code that is defined as heuristically cacheable".
    if !(cc.public
        || headers.contains_key(EXPIRES)
        || cc.max_age.is_some()
        || cc.s_maxage.is_some()
        || heuristically_cacheable(status))
    {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// The freshness lifetime in seconds (RFC 9111 §4.2.1), `response_time` standing in for a
/// missing `Date`.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
    rules: &Rules,
) -> u64 {
    // "If the cache is shared and the s-maxage response directive is present, use its value";
    if let Some(s) = cc.s_maxage {
        return s;
    }
    // "or if the max-age response directive is present, use its value";
    if let Some(m) = cc.max_age {
        return m;
    }
    let date = date_value(headers, response_time);
    // "or if the Expires response header field is present, use its value minus the value of
    // the Date response header field"; §5.3: "A cache recipient MUST interpret invalid date
    // formats, especially the value "0", as representing a time in the past".
    if headers.contains_key(EXPIRES) {
        return match http_date(headers, &EXPIRES) {
            Some(expires) => secs(expires).saturating_sub(secs(date)),
            None => 0,
        };
    }
    if !heuristically_cacheable(status) {
        return 0;
    }
    // §4.2.2: "If the response has a Last-Modified header field, caches are encouraged to use a
    // heuristic expiration value that is no more than some fraction of the interval since that
    // time. A typical setting of this fraction might be 10%."
    if let Some(modified) = http_date(headers, &LAST_MODIFIED)
        && !rules.heuristic_max_ttl.is_zero()
    {
        let tenth = secs(date).saturating_sub(secs(modified)) / 10;
        return tenth.min(rules.heuristic_max_ttl.as_secs());
    }
    rules.default_ttl.as_secs()
}

/// `corrected_initial_age` in seconds (RFC 9111 §4.2.3): what the response's age was when it
/// arrived, from `Age`, `Date` and the request and response times.
pub fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> u64 {
    let age_value = headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .map_or(0, |v| delta_seconds(v.trim()));
    let date = date_value(headers, response_time);
    // apparent_age = max(0, response_time - date_value);
    let apparent_age = secs(response_time).saturating_sub(secs(date));
    // response_delay = response_time - request_time;
    let response_delay = secs(response_time).saturating_sub(secs(request_time));
    // corrected_age_value = age_value + response_delay;
    let corrected_age_value = age_value.saturating_add(response_delay);
    // corrected_initial_age = max(apparent_age, corrected_age_value);
    apparent_age.max(corrected_age_value)
}

/// Everything about a stored response that decides whether it may answer, derived once when it
/// is stored (or refreshed by a 304) from its headers and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// When the request that produced the stored response was sent (whole seconds).
    pub request_time: SystemTime,
    /// When the stored response arrived.
    pub response_time: SystemTime,
    /// `corrected_initial_age`, seconds.
    pub initial_age: u64,
    /// Freshness lifetime, seconds.
    pub lifetime: u64,
    /// `no-cache` in the response: every use needs a successful revalidation (§5.2.2.4).
    pub no_cache: bool,
    /// `must-revalidate` or `proxy-revalidate` (or `no-cache`): never served stale (§4.2.4).
    pub no_stale: bool,
    /// `s-maxage` was present: it "implies the semantics of proxy-revalidate" for a client's
    /// `max-stale` (§5.2.2.10); the origin's own stale-* permissions still apply.
    pub s_maxage: bool,
    /// `stale-while-revalidate` window, seconds (0 = none).
    pub stale_while_revalidate: u64,
    /// `stale-if-error` window, seconds (0 = none).
    pub stale_if_error: u64,
}

impl Freshness {
    /// Derive from a response stored at `response_time` for a request sent at `request_time`.
    pub fn new(
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: &Rules,
    ) -> Freshness {
        let cc = CacheControl::parse(headers);
        Freshness {
            request_time,
            response_time,
            initial_age: initial_age(headers, request_time, response_time),
            lifetime: freshness_lifetime(status, headers, &cc, response_time, rules),
            no_cache: cc.no_cache,
            no_stale: cc.must_revalidate || cc.proxy_revalidate || cc.no_cache,
            s_maxage: cc.s_maxage.is_some(),
            stale_while_revalidate: cc.stale_while_revalidate.unwrap_or(0),
            stale_if_error: cc.stale_if_error.unwrap_or(0),
        }
    }

    /// `current_age` at `now` (§4.2.3: `corrected_initial_age + resident_time`).
    pub fn current_age(&self, now: SystemTime) -> u64 {
        let resident_time = secs(now).saturating_sub(secs(self.response_time));
        self.initial_age.saturating_add(resident_time)
    }

    /// Seconds of freshness left at `now`; negative once stale (the `ttl` of `Cache-Status`).
    pub fn ttl(&self, now: SystemTime) -> i64 {
        let lifetime = i64::try_from(self.lifetime).unwrap_or(i64::MAX);
        let age = i64::try_from(self.current_age(now)).unwrap_or(i64::MAX);
        lifetime.saturating_sub(age)
    }

    /// §4.2: "response_is_fresh = (freshness_lifetime > current_age)".
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.current_age(now)
    }

    /// Whether the stored response may answer a request with `req` directives at `now`.
    pub fn evaluate(&self, req: &CacheControl, now: SystemTime) -> Verdict {
        let age = self.current_age(now);
        let fresh = self.lifetime > age;
        let staleness = age.saturating_sub(self.lifetime);
        // RFC 5861 §4: stale-if-error may come from the response or the request.
        let sie = self.stale_if_error.max(req.stale_if_error.unwrap_or(0));
        let stale_on_error = !self.no_stale && sie > 0 && staleness <= sie;
        let revalidate = |fwd| Verdict::Revalidate {
            fwd,
            stale_on_error,
        };
        let why = if fresh { Fwd::Request } else { Fwd::Stale };
        // §5.2.2.4: a response with no-cache "MUST NOT be used to satisfy any other request
        // without forwarding it for validation and receiving a successful response".
        if self.no_cache {
            return revalidate(Fwd::Stale);
        }
        // §5.2.1.4: request no-cache: "a cache MUST NOT use a stored response to satisfy the
        // request without successfully validating it on the origin server".
        if req.no_cache {
            return revalidate(why);
        }
        // §5.2.1.1: max-age: "the client prefers a response whose age is less than or equal to
        // the specified number of seconds".
        if req.max_age.is_some_and(|max| age > max) {
            return revalidate(why);
        }
        if fresh {
            // §5.2.1.3: min-fresh: "fresh for at least the specified number of seconds".
            if req.min_fresh.is_some_and(|min| self.lifetime - age < min) {
                return revalidate(Fwd::Request);
            }
            return Verdict::Serve;
        }
        // Stale. §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an
        // explicit in-protocol directive (e.g., by a no-cache response directive, a
        // must-revalidate response directive, or an applicable s-maxage or proxy-revalidate
        // response directive)".
        if !self.no_stale
            && !self.s_maxage
            && let Some(max_stale) = req.max_stale
            && max_stale.is_none_or(|max| staleness <= max)
        {
            return Verdict::Serve;
        }
        // RFC 5861 §3: "caches MAY serve the response in which it appears after it becomes
        // stale, up to the indicated number of seconds", revalidating in the background.
        if !self.no_stale
            && self.stale_while_revalidate > 0
            && staleness <= self.stale_while_revalidate
        {
            return Verdict::ServeStaleAndRefresh;
        }
        revalidate(Fwd::Stale)
    }
}

/// What to do with a stored response for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with it (fresh, or stale within the client's `max-stale`).
    Serve,
    /// Answer with it now (stale-while-revalidate) and revalidate it in the background once.
    ServeStaleAndRefresh,
    /// Ask upstream first (a conditional request); if that fails or answers 5xx, the stored
    /// response may still answer when `stale_on_error`.
    Revalidate { fwd: Fwd, stale_on_error: bool },
}

/// The `fwd` parameter of `Cache-Status` (RFC 9211 §2.2): why the request went upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// The cache was configured not to handle the request.
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored for the URI.
    UriMiss,
    /// Something stored for the URI, but not for these `Vary` header values.
    VaryMiss,
    /// The request's directives did not allow the stored response.
    Request,
    /// The stored response was stale.
    Stale,
}

impl Fwd {
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// One member of `Cache-Status` (RFC 9211), named `switchyard`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// §2.1: "the request was satisfied by the cache" (no upstream request at all).
    pub hit: bool,
    /// §2.2: why the request went upstream.
    pub fwd: Option<Fwd>,
    /// §2.3: the status the upstream answered.
    pub fwd_status: Option<u16>,
    /// §2.4: freshness left, seconds (negative when stale).
    pub ttl: Option<i64>,
    /// §2.5: the response was stored.
    pub stored: bool,
    /// §2.6: the request was collapsed into another one to the same URI.
    pub collapsed: bool,
    /// §2.8: more about what happened.
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// The field member, e.g. `switchyard; fwd=uri-miss; fwd-status=200; stored`.
    pub fn member(&self) -> String {
        let mut s = String::with_capacity(64);
        self.push_member(&mut s);
        s
    }

    fn push_member(&self, s: &mut String) {
        s.push_str("switchyard");
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            s.push_str("; fwd=");
            s.push_str(fwd.as_str());
        }
        if let Some(status) = self.fwd_status {
            s.push_str("; fwd-status=");
            s.push_str(itoa::Buffer::new().format(status));
        }
        if let Some(ttl) = self.ttl {
            s.push_str("; ttl=");
            s.push_str(itoa::Buffer::new().format(ttl));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            // An sf-token: detail strings here are lowercase words and dashes.
            s.push_str("; detail=");
            s.push_str(detail);
        }
    }

    /// Add this member after those of caches closer to the origin (RFC 9211 §2: "the
    /// left-most cache is the one closest to the origin server").
    pub fn append_to(&self, headers: &mut HeaderMap) {
        let theirs = headers.get(CACHE_STATUS).cloned();
        self.append_after(theirs.as_ref(), headers);
    }

    /// Set `Cache-Status` in `headers` to `theirs` (the stored response's own, from caches
    /// closer to the origin) followed by this member. Every answer of the cache layer passes
    /// here once (or through [`CacheStatus::count`]), so this is also where its outcome is
    /// counted ([`crate::metrics`]).
    pub fn append_after(&self, theirs: Option<&HeaderValue>, headers: &mut HeaderMap) {
        self.count();
        if let Some(value) = self.value_after(theirs) {
            headers.insert(CACHE_STATUS, value);
        }
    }

    /// Count this outcome in the metrics.
    pub fn count(&self) {
        crate::metrics::cache_outcome(self.hit, self.fwd, self.stored, self.collapsed);
    }

    /// The `Cache-Status` value: `theirs` followed by this member.
    pub fn value_after(&self, theirs: Option<&HeaderValue>) -> Option<HeaderValue> {
        let mut value = match theirs.and_then(|v| v.to_str().ok()) {
            Some(theirs) if !theirs.trim().is_empty() => {
                let mut v = String::with_capacity(theirs.len() + 64);
                v.push_str(theirs);
                v.push_str(", ");
                v
            }
            _ => String::with_capacity(64),
        };
        self.push_member(&mut value);
        // Takes the string's buffer as it is (validated, not copied).
        HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
    }
}

/// The header names of `Vary`, lowercased and sorted; `None` for `Vary: *` (never stored).
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(VARY) {
        let text = value.to_str().unwrap_or("*");
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            // A name that is not a valid field name cannot match any request field: refuse.
            names.push(HeaderName::from_bytes(name.as_bytes()).ok()?);
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// The secondary cache key (§4.1): the request's values of the `Vary` fields, whitespace
/// around commas normalised, so `gzip,br` and `gzip, br` select the same variant.
pub fn secondary_key(vary: &[HeaderName], req_headers: &HeaderMap) -> String {
    let mut key = String::new();
    for name in vary {
        key.push_str(name.as_str());
        key.push(':');
        let values: Vec<String> = req_headers
            .get_all(name)
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty())
            .collect();
        key.push_str(&values.join(","));
        key.push('\n');
    }
    key
}

/// The primary cache key (§2): scheme, lowercased host (with port) and target. GET and HEAD
/// share it.
pub fn base_key(scheme: &str, host: &str, path: &str, query: Option<&str>) -> String {
    let mut key = String::new();
    base_key_into(&mut key, scheme, host, path, query);
    key
}

/// [`base_key`], written into `key` (cleared first), whose allocation can serve again.
pub fn base_key_into(key: &mut String, scheme: &str, host: &str, path: &str, query: Option<&str>) {
    key.clear();
    key.reserve(scheme.len() + 3 + host.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    key.push_str(scheme);
    key.push_str("://");
    let at = key.len();
    key.push_str(host);
    key[at..].make_ascii_lowercase();
    key.push_str(path);
    if let Some(q) = query {
        key.push('?');
        key.push_str(q);
    }
}

/// Request header fields that a cache forwarding on its own behalf replaces or drops: the
/// client's own preconditions and ranges are evaluated by the cache, not upstream.
const CLIENT_CONDITIONALS: [HeaderName; 6] = [
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
    RANGE,
];

/// The headers of an upstream request made to fill the cache: the client's without its
/// preconditions and `Range` (the cache evaluates those against the whole response).
pub fn fill_request_headers(req_headers: &HeaderMap) -> HeaderMap {
    let mut headers = req_headers.clone();
    for name in &CLIENT_CONDITIONALS {
        headers.remove(name);
    }
    headers
}

/// The headers of a revalidation request (§4.3.1): the client's, without its preconditions,
/// plus `If-None-Match` with the stored entity-tag and `If-Modified-Since` with the stored
/// `Last-Modified`. `None` when the stored response has no validator to send.
pub fn revalidation_headers(req_headers: &HeaderMap, stored: &HeaderMap) -> Option<HeaderMap> {
    let etag = stored.get(ETAG);
    let modified = stored.get(LAST_MODIFIED);
    if etag.is_none() && modified.is_none() {
        return None;
    }
    let mut headers = fill_request_headers(req_headers);
    // §4.3.1: "the If-None-Match header field ... MUST" carry the stored entity-tags when the
    // cache has them; "If-Modified-Since ... SHOULD" use the stored Last-Modified.
    if let Some(etag) = etag {
        headers.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = modified {
        headers.insert(IF_MODIFIED_SINCE, modified.clone());
    }
    Some(headers)
}

/// Update a stored response's header fields from a 304 (RFC 9111 §4.3.4 and §3.2). Returns
/// `false`, changing nothing, when the 304 names a different representation (its strong
/// `ETag` differs from the stored one): the stored response must not be refreshed then.
pub fn merge_not_modified(stored: &mut HeaderMap, not_modified: &HeaderMap) -> bool {
    if let (Some(theirs), Some(ours)) = (not_modified.get(ETAG), stored.get(ETAG))
        && !etag_weak_eq(theirs.as_bytes(), ours.as_bytes())
    {
        return false;
    }
    // §3.2: "the cache MUST add each header field in the provided response to the stored
    // response, replacing field values that are already present, with the following
    // exceptions: ... The Content-Length header field" (and fields excepted from storage).
    let mut fresh = not_modified.clone();
    fresh.remove(CONTENT_LENGTH);
    strip_unstorable(&mut fresh);
    let mut last: Option<HeaderName> = None;
    for (name, value) in fresh {
        match name {
            Some(name) => {
                stored.insert(name.clone(), value);
                last = Some(name);
            }
            // Further values of the same field.
            None => {
                if let Some(name) = &last {
                    stored.append(name.clone(), value);
                }
            }
        }
    }
    true
}

/// Remove the fields a cache must not store (§3.1): `Connection`, the fields it names, and
/// the hop-by-hop `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`.
pub fn strip_unstorable(headers: &mut HeaderMap) {
    for name in crate::proxy::headers::connection_options(headers) {
        headers.remove(name);
    }
    for name in [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
    headers.remove("keep-alive");
}

/// Whether a response of `status` to `method` invalidates the stored responses for the target
/// URI (RFC 9111 §4.4: "A cache MUST invalidate the target URI ... when it receives a
/// non-error status code in response to an unsafe request method").
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    !safe && (status.is_success() || status.is_redirection())
}

/// The `Location` and `Content-Location` targets of a response that §4.4 also invalidates,
/// as paths on the same host (the RFC limits it to the same origin). `host` is the request's.
pub fn invalidated_locations(headers: &HeaderMap, scheme: &str, host: &str) -> Vec<String> {
    let origin = format!("{scheme}://{}", host.to_ascii_lowercase());
    [http::header::LOCATION, http::header::CONTENT_LOCATION]
        .iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .filter_map(|target| {
            if target.starts_with('/') && !target.starts_with("//") {
                Some(format!("{origin}{target}"))
            } else {
                let lower = target.to_ascii_lowercase();
                let rest = lower.strip_prefix(&origin)?;
                rest.starts_with('/')
                    .then(|| format!("{origin}{}", &target[origin.len()..]))
            }
        })
        .collect()
}

/// Whether the client's own preconditions make the served response a 304 (RFC 9110 §13.2.2
/// steps 3 and 4, for GET and HEAD): `If-None-Match` against the stored `ETag` (weak
/// comparison), else `If-Modified-Since` against `Last-Modified`.
pub fn client_not_modified(req_headers: &HeaderMap, stored: &HeaderMap) -> bool {
    if req_headers.contains_key(IF_NONE_MATCH) {
        // The same list rules as for files; a stored response without an ETag matches `*` only.
        let etag = stored.get(ETAG).and_then(|v| v.to_str().ok());
        return crate::files::conditional::none_match_matches(req_headers, etag.unwrap_or(""));
    }
    // The stored date is parsed only when the client sent one to compare it with.
    let Some(since) = http_date(req_headers, &IF_MODIFIED_SINCE) else {
        return false;
    };
    http_date(stored, &LAST_MODIFIED).is_some_and(|modified| secs(modified) <= secs(since))
}

/// The headers a 304 made from a stored response carries (RFC 9110 §15.4.5).
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [
        http::header::CACHE_CONTROL,
        http::header::CONTENT_LOCATION,
        DATE,
        ETAG,
        EXPIRES,
        VARY,
        LAST_MODIFIED,
    ] {
        for value in stored.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// Weak comparison of two entity-tags (RFC 9110 §8.8.3.2): `W/` prefixes ignored.
fn etag_weak_eq<'a>(a: &'a [u8], b: &'a [u8]) -> bool {
    let strip = |t: &'a [u8]| -> &'a [u8] { t.strip_prefix(b"W/").unwrap_or(t).trim_ascii() };
    strip(a) == strip(b)
}

fn http_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    crate::http_date::parse(value.trim())
}

/// The `Date` of a response, or when it arrived if it has none (RFC 9110 §6.6.1).
fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    http_date(headers, &DATE).unwrap_or(response_time)
}

/// Whole seconds since the epoch; times before it count as 0.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
