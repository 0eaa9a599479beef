//! [`CacheLayer`]: the cache as the proxy meets it — one call per request, with the upstream
//! request passed in as a closure.
//!
//! # The seam with the proxy
//!
//! ```text
//! let served = layer
//!     .handle(req, move |upstream_req| proxy.clone().forward_for_cache(upstream_req, max))
//!     .await;
//! if let Some(refresh) = served.refresh {
//!     actix_rt::spawn(refresh); // stale-while-revalidate: revalidate once, in the background
//! }
//! served.response
//! ```
//!
//! The closure gets a [`Request`] to send upstream as it is (for GET and HEAD the cache has
//! replaced the client's preconditions and `Range` with its own, and HEAD became GET so the
//! answer can be stored) and answers [`Forwarded`]:
//!
//! * `Forwarded::Complete(UpstreamResponse)` — status, headers (hop-by-hop fields already
//!   removed) and the whole body, when the proxy read it completely within
//!   [`CacheLayer::max_object_size`] bytes;
//! * `Forwarded::Passthrough(Response)` — a response whose body is larger (or of unknown
//!   length and turned out larger): the proxy's own streamed [`Response`], passed to the client
//!   untouched, never stored;
//! * `Forwarded::Failed(Response)` — the upstream could not be reached or failed (connect error, timeout,
//!   all members down): the proxy's own error response. It counts as an upstream error for
//!   `stale-if-error`, and is what the client gets when no stored response may answer.
//!
//! The closure may be called more than once for one request (when a 304 names a different
//! representation, the request is repeated unconditionally), and once more in the background
//! for stale-while-revalidate, hence `Fn` and `'static`. Everything else — lookup, Vary,
//! freshness, revalidation, collapsed forwarding, storing, `Age`, `Cache-Status`, PURGE and
//! invalidation after unsafe methods — happens here.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AGE, CONTENT_LENGTH, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};
use switchyard_conf::CacheConfig;

use super::collapse::{Flights, Role};
use super::directives::CacheControl;
use super::policy::{
    CacheStatus, Fwd, NotStorable, Verdict, base_key_into, client_not_modified,
    fill_request_headers, invalidated_locations, invalidates, merge_not_modified,
    not_modified_headers, revalidation_headers, secondary_key, storable, strip_unstorable,
    vary_names,
};
use super::store::{Entry, Lookup, Store};
use crate::message::{Body, Request, Response, SharedFields};

/// A complete upstream response, as the cache consumes it.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    /// Without hop-by-hop fields.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the proxy got from upstream for a request the cache forwarded.
#[derive(Debug)]
pub enum Forwarded {
    /// The whole response, body within [`CacheLayer::max_object_size`].
    Complete(UpstreamResponse),
    /// Too large to buffer: the proxy's streamed response, never stored or shared.
    Passthrough(Response),
    /// The upstream failed (connect error, timeout, all members down): the proxy's own error
    /// response, which the client gets unless `stale-if-error` lets a stored response answer.
    Failed(Response),
}

/// The answer to a request, and the background work it started, if any.
#[derive(Debug)]
#[must_use = "the response goes to the client and the refresh must be spawned"]
pub struct Served {
    pub response: Response,
    /// A revalidation to run in the background (stale-while-revalidate): spawn it.
    pub refresh: Option<Refresh>,
}

impl Served {
    fn now(response: Response) -> Served {
        Served {
            response,
            refresh: None,
        }
    }
}

/// A background revalidation of one stored response. At most one runs per URI at a time.
#[must_use = "a refresh does nothing unless spawned or awaited"]
pub struct Refresh(Pin<Box<dyn Future<Output = ()>>>);

impl fmt::Debug for Refresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Refresh")
    }
}

impl Future for Refresh {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// Where the cache reads the time (wall clock: `Date`, `Expires` and `Age` are wall-clock
/// values). Tests pass their own.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The HTTP cache of one server: shared by all workers (cheap to clone).
#[derive(Clone)]
pub struct CacheLayer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// In-flight upstream requests by primary key; the value shared with followers is the
    /// entry the leader stored, or `None` ("go yourself": not shareable or failed).
    flights: Flights<Option<Arc<Entry>>>,
    config: CacheConfig,
    clock: Clock,
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("store", &self.inner.store)
            .field("flights", &self.inner.flights)
            .finish()
    }
}

/// The parts of the client's request the cache keeps while it works (GET and HEAD only; their
/// bodies, if any, are not forwarded).
#[derive(Debug, Clone)]
struct Parts {
    path: String,
    query: Option<String>,
    version: Version,
    host: Option<String>,
    headers: HeaderMap,
    scheme: &'static str,
    peer: std::net::SocketAddr,
    base: String,
}

impl Parts {
    fn upstream(&self, headers: HeaderMap) -> Request {
        Request {
            method: Method::GET,
            path: self.path.clone(),
            query: self.query.clone(),
            version: self.version,
            host: self.host.clone(),
            headers,
            scheme: self.scheme,
            peer: self.peer,
            body: Bytes::new(),
            stream: None,
        }
    }
}

/// The primary key of a request.
fn key_of(req: &Request) -> String {
    let mut key = String::new();
    write_key_of(&mut key, req);
    key
}

/// [`key_of`], written into `key` (cleared first).
fn write_key_of(key: &mut String, req: &Request) {
    base_key_into(
        key,
        req.scheme,
        req.host.as_deref().unwrap_or(""),
        &req.path,
        req.query.as_deref(),
    );
}

impl CacheLayer {
    /// Open the cache `cfg` describes (creating and indexing the disk tier's directory).
    pub fn new(cfg: &CacheConfig) -> io::Result<CacheLayer> {
        Ok(Self::with_clock(
            cfg,
            Store::open(cfg)?,
            Arc::new(SystemTime::now),
        ))
    }

    /// A cache over `store` reading the time from `clock`.
    pub fn with_clock(cfg: &CacheConfig, store: Store, clock: Clock) -> CacheLayer {
        CacheLayer {
            inner: Arc::new(Inner {
                store,
                flights: Flights::default(),
                config: cfg.clone(),
                clock,
            }),
        }
    }

    /// The largest body the proxy should buffer for [`Forwarded::Complete`].
    pub fn max_object_size(&self) -> u64 {
        self.inner.config.max_object_size
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn now(&self) -> SystemTime {
        (self.inner.clock)()
    }

    /// The answer to `req` when a fresh stored response in memory serves it as it is: the
    /// common hit, answered without the machinery (and the large future) of
    /// [`CacheLayer::handle`], which the caller uses when this gives `None`.
    pub fn fresh_hit(&self, req: &Request) -> Option<Response> {
        if req.method != Method::GET && req.method != Method::HEAD {
            return None;
        }
        thread_local! {
            /// The key of the last lookup: its allocation serves every hit of the thread.
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let lookup = KEY.with_borrow_mut(|key| {
            write_key_of(key, req);
            self.inner.store.get(key, &req.headers)
        });
        let Lookup::Hit(entry) = lookup else {
            return None;
        };
        let now = self.now();
        let req_cc = CacheControl::parse(&req.headers);
        match entry.freshness.evaluate(&req_cc, now) {
            Verdict::Serve => Some(self.fresh_hit_response(&req.headers, &entry, now)),
            _ => None,
        }
    }

    /// Answer `req`, from the cache or through `forward`.
    pub async fn handle<F, Fut>(&self, req: Request, forward: F) -> Served
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Forwarded> + 'static,
    {
        if is_purge(&req.method) {
            return Served::now(self.purge(&req).await);
        }
        if req.method != Method::GET && req.method != Method::HEAD {
            return Served::now(self.pass_through(req, forward).await);
        }
        let req_cc = CacheControl::parse(&req.headers);
        let parts = Parts {
            base: key_of(&req),
            path: req.path,
            query: req.query,
            version: req.version,
            host: req.host,
            headers: req.headers,
            scheme: req.scheme,
            peer: req.peer,
        };
        let entry = match self.lookup(&parts).await {
            Lookup::Hit(entry) => entry,
            Lookup::VaryMiss => {
                return Served::now(self.miss(parts, &req_cc, Fwd::VaryMiss, forward).await);
            }
            Lookup::UriMiss => {
                return Served::now(self.miss(parts, &req_cc, Fwd::UriMiss, forward).await);
            }
        };
        let now = self.now();
        match entry.freshness.evaluate(&req_cc, now) {
            Verdict::Serve => Served::now(self.fresh_hit_response(&parts.headers, &entry, now)),
            Verdict::ServeStaleAndRefresh => {
                let status = CacheStatus {
                    hit: true,
                    ttl: Some(entry.freshness.ttl(now)),
                    detail: Some("stale-while-revalidate"),
                    ..Default::default()
                };
                let response = self.respond(&parts.headers, &entry, status);
                let refresh = self.inner.flights.lead(&parts.base).map(|leader| {
                    let this = self.clone();
                    Refresh(Box::pin(async move {
                        let (_, shared) = this
                            .upstream(&parts, Fwd::Stale, Some((&entry, false)), &forward)
                            .await;
                        leader.publish(shared);
                    }))
                });
                Served { response, refresh }
            }
            Verdict::Revalidate {
                fwd,
                stale_on_error,
            } => {
                if req_cc.only_if_cached {
                    return Served::now(only_if_cached(fwd));
                }
                let stored = Some((entry, stale_on_error));
                Served::now(self.collapsed(parts, fwd, stored, forward).await)
            }
        }
    }

    async fn miss<F, Fut>(
        &self,
        parts: Parts,
        req_cc: &CacheControl,
        fwd: Fwd,
        forward: F,
    ) -> Response
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Forwarded> + 'static,
    {
        // §5.2.1.7: only-if-cached: "respond either using a stored response consistent with
        // the other constraints of the request or a 504 (Gateway Timeout) status code".
        if req_cc.only_if_cached {
            return only_if_cached(fwd);
        }
        self.collapsed(parts, fwd, None, forward).await
    }

    /// Memory, then disk.
    async fn lookup(&self, parts: &Parts) -> Lookup {
        let store = &self.inner.store;
        let found = store.get(&parts.base, &parts.headers);
        if matches!(found, Lookup::Hit(_)) || !store.disk_has(&parts.base) {
            return found;
        }
        let (store, base, headers) = (store.clone(), parts.base.clone(), parts.headers.clone());
        let from_disk = tokio::task::spawn_blocking(move || store.disk_get(&base, &headers)).await;
        match from_disk {
            Ok(Some(entry)) => Lookup::Hit(entry),
            _ => found,
        }
    }

    /// Go upstream once per key: lead the flight, or wait for its leader's result.
    async fn collapsed<F, Fut>(
        &self,
        parts: Parts,
        fwd: Fwd,
        stored: Option<(Arc<Entry>, bool)>,
        forward: F,
    ) -> Response
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Forwarded> + 'static,
    {
        let stored = stored.as_ref().map(|(e, sie)| (e, *sie));
        match self.inner.flights.join(&parts.base) {
            Role::Leader(leader) => {
                let (response, shared) = self.upstream(&parts, fwd, stored, &forward).await;
                leader.publish(shared);
                response
            }
            Role::Follower(follower) => {
                if let Some(Some(entry)) = follower.wait(self.inner.config.lock_timeout).await
                    && entry.secondary == secondary_key(&entry.vary, &parts.headers)
                {
                    let status = CacheStatus {
                        fwd: Some(fwd),
                        fwd_status: Some(entry.status.as_u16()),
                        ttl: Some(entry.freshness.ttl(self.now())),
                        collapsed: true,
                        ..Default::default()
                    };
                    return self.respond(&parts.headers, &entry, status);
                }
                // Timed out, or the leader's response is not for us: go ourselves.
                self.upstream(&parts, fwd, stored, &forward).await.0
            }
        }
    }

    /// One trip upstream (a fill, or a revalidation when `stored` is given) and what follows
    /// from its answer. Returns the client's response and the entry to share with followers.
    async fn upstream<F, Fut>(
        &self,
        parts: &Parts,
        fwd: Fwd,
        stored: Option<(&Arc<Entry>, bool)>,
        forward: &F,
    ) -> (Response, Option<Arc<Entry>>)
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Forwarded> + 'static,
    {
        let conditional =
            stored.and_then(|(e, _)| revalidation_headers(&parts.headers, &e.headers));
        let revalidating = conditional.is_some();
        let headers = conditional.unwrap_or_else(|| fill_request_headers(&parts.headers));
        let request_time = self.now();
        let result = forward(parts.upstream(headers)).await;
        let response_time = self.now();
        let mut status = CacheStatus {
            fwd: Some(fwd),
            ..Default::default()
        };
        let stale = stored
            .filter(|(_, stale_on_error)| *stale_on_error)
            .map(|(e, _)| e);
        let up = match result {
            Forwarded::Failed(mut error) => {
                if let Some(entry) = stale {
                    return (self.stale_if_error(parts, entry, fwd, None), None);
                }
                status.fwd_status = Some(error.status.as_u16());
                status.detail = Some("upstream-error");
                status.append_to(&mut error.headers);
                return (error, None);
            }
            Forwarded::Passthrough(mut response) => {
                if stored.is_some() && !response.status.is_server_error() {
                    // A new representation replaced the stored one, and it is too large to keep.
                    self.forget(&parts.base).await;
                }
                status.fwd_status = Some(response.status.as_u16());
                status.detail = Some(NotStorable::TooLarge.as_str());
                status.append_to(&mut response.headers);
                return (response, None);
            }
            Forwarded::Complete(up) => up,
        };
        status.fwd_status = Some(up.status.as_u16());

        if up.status == StatusCode::NOT_MODIFIED && revalidating {
            if let Some((entry, _)) = stored {
                let mut headers = entry.headers.clone();
                // §4.3.4: "the cache MUST ... use other header fields provided in the 304 (Not
                // Modified) response to replace all instances of the corresponding header
                // fields in the stored response".
                if merge_not_modified(&mut headers, &up.headers) {
                    let refreshed = Arc::new(Entry::new(
                        entry.base.clone(),
                        entry.secondary.clone(),
                        entry.vary.clone(),
                        entry.status,
                        headers,
                        entry.body.clone(),
                        request_time,
                        response_time,
                        self.inner.store.rules(),
                    ));
                    self.keep(refreshed.clone()).await;
                    status.stored = true;
                    status.ttl = Some(refreshed.freshness.ttl(response_time));
                    return (
                        self.respond(&parts.headers, &refreshed, status),
                        Some(refreshed),
                    );
                }
            }
            // The 304 is about another representation: ask again without conditions.
            return Box::pin(self.upstream(parts, fwd, None, forward)).await;
        }
        // RFC 5861 §4: "an error is any situation that would result in a 500, 502, 503, or 504
        // HTTP response status code being returned".
        if matches!(up.status.as_u16(), 500 | 502 | 503 | 504)
            && let Some(entry) = stale
        {
            return (
                self.stale_if_error(parts, entry, fwd, Some(up.status)),
                None,
            );
        }

        let cc = CacheControl::parse(&up.headers);
        let req_cc = CacheControl::parse(&parts.headers);
        let verdict = storable(
            &Method::GET,
            &parts.headers,
            &req_cc,
            up.status,
            &up.headers,
            &cc,
        )
        .and_then(|()| {
            if up.body.len() as u64 > self.inner.config.max_object_size {
                Err(NotStorable::TooLarge)
            } else {
                Ok(())
            }
        });
        let mut headers = up.headers;
        strip_unstorable(&mut headers);
        match verdict {
            Ok(()) => {
                let vary = vary_names(&headers).unwrap_or_default();
                let secondary = secondary_key(&vary, &parts.headers);
                let entry = Arc::new(Entry::new(
                    parts.base.clone(),
                    secondary,
                    vary,
                    up.status,
                    headers,
                    up.body,
                    request_time,
                    response_time,
                    self.inner.store.rules(),
                ));
                self.keep(entry.clone()).await;
                status.stored = true;
                status.ttl = Some(entry.freshness.ttl(response_time));
                (self.respond(&parts.headers, &entry, status), Some(entry))
            }
            Err(why) => {
                if stored.is_some() && !up.status.is_server_error() {
                    // The stored representation was replaced by one we may not keep.
                    self.forget(&parts.base).await;
                }
                status.detail = Some(why.as_str());
                status.append_to(&mut headers);
                headers.remove(CONTENT_LENGTH);
                let response = Response {
                    status: up.status,
                    headers,
                    shared: None,
                    body: body_of(up.body),
                };
                (response, None)
            }
        }
    }

    /// The stored response, served because the upstream failed (RFC 5861 §4).
    fn stale_if_error(
        &self,
        parts: &Parts,
        entry: &Arc<Entry>,
        fwd: Fwd,
        upstream: Option<StatusCode>,
    ) -> Response {
        let status = CacheStatus {
            fwd: Some(fwd),
            fwd_status: upstream.map(|s| s.as_u16()),
            ttl: Some(entry.freshness.ttl(self.now())),
            detail: Some("stale-if-error"),
            ..Default::default()
        };
        self.respond(&parts.headers, entry, status)
    }

    /// The client's response made from a stored one: `Age`, `Cache-Status`, and a 304 when
    /// the client's own preconditions say it has this representation already.
    fn respond(&self, req_headers: &HeaderMap, entry: &Entry, status: CacheStatus) -> Response {
        self.respond_at(req_headers, entry, status, self.now())
    }

    /// A fresh stored response answering a request as it is.
    fn fresh_hit_response(
        &self,
        req_headers: &HeaderMap,
        entry: &Entry,
        now: SystemTime,
    ) -> Response {
        let status = CacheStatus {
            hit: true,
            ttl: Some(entry.freshness.ttl(now)),
            ..Default::default()
        };
        if entry.status == StatusCode::OK && client_not_modified(req_headers, &entry.headers) {
            return not_modified(entry, status, entry.freshness.current_age(now));
        }
        // The common hit: every field as made for this second.
        status.count();
        stored(entry, entry.hit_fields(now))
    }

    /// [`CacheLayer::respond`] with the clock already read.
    fn respond_at(
        &self,
        req_headers: &HeaderMap,
        entry: &Entry,
        status: CacheStatus,
        now: SystemTime,
    ) -> Response {
        let age = entry.freshness.current_age(now);
        if entry.status == StatusCode::OK && client_not_modified(req_headers, &entry.headers) {
            return not_modified(entry, status, age);
        }
        status.count();
        let cache_status = status.value_after(entry.upstream_status.as_ref());
        stored(entry, entry.fields_with(age, cache_status.as_ref()))
    }

    /// Store in memory and, when configured, on disk.
    async fn keep(&self, entry: Arc<Entry>) {
        let store = self.inner.store.clone();
        store.put_memory(entry.clone());
        if store.has_disk() {
            let written = tokio::task::spawn_blocking(move || store.disk_put(&entry)).await;
            if let Ok(Err(e)) = written {
                tracing::warn!(error = %e, "cache: disk tier write failed; entry kept in memory only");
            }
        }
    }

    /// Forget every variant of a URI in both tiers; whether anything was stored.
    async fn forget(&self, base: &str) -> bool {
        let store = self.inner.store.clone();
        if !store.has_disk() {
            return store.remove(base);
        }
        let base = base.to_owned();
        tokio::task::spawn_blocking(move || store.remove(&base))
            .await
            .unwrap_or(false)
    }

    /// Unsafe and other uncacheable methods go upstream untouched; a success invalidates the
    /// stored responses for the target URI and its `Location`/`Content-Location` (§4.4).
    async fn pass_through<F, Fut>(&self, req: Request, forward: F) -> Response
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Forwarded> + 'static,
    {
        let method = req.method.clone();
        let base = key_of(&req);
        let scheme = req.scheme;
        let host = req.host.clone().unwrap_or_default();
        let mut response = match forward(req).await {
            Forwarded::Complete(up) => {
                let mut headers = up.headers;
                headers.remove(CONTENT_LENGTH);
                Response {
                    status: up.status,
                    headers,
                    shared: None,
                    body: body_of(up.body),
                }
            }
            Forwarded::Passthrough(response) | Forwarded::Failed(response) => response,
        };
        if invalidates(&method, response.status) {
            self.forget(&base).await;
            for target in invalidated_locations(&response.headers, scheme, &host) {
                self.forget(&target).await;
            }
        }
        CacheStatus {
            fwd: Some(Fwd::Method),
            fwd_status: Some(response.status.as_u16()),
            ..Default::default()
        }
        .append_to(&mut response.headers);
        response
    }

    /// PURGE: from an allowed address, forget the target URI (all variants, both tiers): 200
    /// when something was stored, 404 when not; 403 from any other address.
    pub async fn purge(&self, req: &Request) -> Response {
        if !self.inner.config.may_purge(req.peer.ip()) {
            return Response::text(
                StatusCode::FORBIDDEN,
                "403 Forbidden: PURGE is not allowed from this address\n",
            );
        }
        if self.forget(&key_of(req)).await {
            Response::text(StatusCode::OK, "purged\n")
        } else {
            Response::text(StatusCode::NOT_FOUND, "404 Not Found: not in the cache\n")
        }
    }
}

/// Whether `method` is PURGE (the cache answers it; it never goes upstream).
pub fn is_purge(method: &Method) -> bool {
    method.as_str().eq_ignore_ascii_case("PURGE")
}

/// A stored response as it is, with `fields` ([`Entry::fields_with`]) its fields.
fn stored(entry: &Entry, fields: Arc<SharedFields>) -> Response {
    Response {
        status: entry.status,
        headers: HeaderMap::new(),
        shared: Some(fields),
        body: body_of(entry.body.clone()),
    }
}

/// The 304 for a client that has the stored 200 already.
fn not_modified(entry: &Entry, status: CacheStatus, age: u64) -> Response {
    let mut headers = not_modified_headers(&entry.headers);
    headers.insert(AGE, HeaderValue::from(age));
    status.append_to(&mut headers);
    Response {
        status: StatusCode::NOT_MODIFIED,
        headers,
        shared: None,
        body: Body::Empty,
    }
}

fn body_of(bytes: Bytes) -> Body {
    if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Bytes(bytes)
    }
}

fn only_if_cached(fwd: Fwd) -> Response {
    let mut response = Response::text(
        StatusCode::GATEWAY_TIMEOUT,
        "504 Gateway Timeout: not in the cache (only-if-cached)\n",
    );
    CacheStatus {
        fwd: Some(fwd),
        detail: Some("only-if-cached"),
        ..Default::default()
    }
    .append_to(&mut response.headers);
    response
}
