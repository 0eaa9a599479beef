//! Routing: virtual host → location → service, and the one mailbox hop to that service.
//!
//! The [`RouteTable`] is an immutable snapshot built from a [`Config`]; a reload swaps the whole
//! snapshot (`arc-swap`), so a request routed under the old configuration finishes under it and
//! readers never wait on a writer. A [`Router`] is one worker's view: the shared table plus the
//! addresses of that worker's service actors. Sessions call [`Router::call`] and await the answer.

use std::sync::Arc;

use actix::Addr;
use arc_swap::ArcSwap;
use switchyard_conf::{Config, Handler, Limits};
use tokio::sync::oneshot;

use crate::actor::{FilesCall, FilesService, supervised};
use crate::cache::CacheLayer;
use crate::files::{FileCache, FilesLocation, serve_from_memory};
use crate::message::{Request, Response};
use crate::proxy::{ProxyRoute, ProxyService};
use crate::redis_routes::proxy::RedisProxy;
use crate::torrent::TorrentStore;
use crate::torrent::http as torrent_http;

/// An immutable view of the configured virtual hosts, ready for matching.
#[derive(Debug)]
pub struct RouteTable {
    vhosts: Vec<VhostRoutes>,
    /// The files limits (ranges, small-file size) of this configuration: they travel with the
    /// routes, so a reload changes them for the requests routed after it.
    limits: Arc<Limits>,
}

#[derive(Debug)]
struct VhostRoutes {
    /// Exact names (lowercase, no port).
    exact: Vec<String>,
    /// Suffixes of `*.example.com` patterns, kept with the leading dot: `.example.com`.
    wildcard: Vec<String>,
    /// True when the vhost has no names or `*`: it matches any host.
    any: bool,
    /// Longest prefix first, so the first match is the best one.
    locations: Vec<(String, Route)>,
}

/// What a matched location does with a request.
#[derive(Debug, Clone)]
pub enum Route {
    Files(Arc<FilesLocation>),
    Proxy(Arc<ProxyRoute>),
    /// A proxy location with `cache = true`: answered through the [`CacheLayer`].
    CachedProxy(Arc<ProxyRoute>),
    /// `metrics = true`: the counters of [`crate::metrics`].
    Metrics,
}

impl RouteTable {
    pub fn new(config: &Config) -> RouteTable {
        let vhosts = config
            .vhosts
            .iter()
            .map(|vhost| {
                let mut exact = Vec::new();
                let mut wildcard = Vec::new();
                let mut any = vhost.names.is_empty();
                for name in &vhost.names {
                    let name = name.to_ascii_lowercase();
                    if name == "*" {
                        any = true;
                    } else if let Some(suffix) = name.strip_prefix('*') {
                        wildcard.push(suffix.to_owned());
                    } else {
                        exact.push(name);
                    }
                }
                let mut locations: Vec<(String, Route)> = vhost
                    .locations
                    .iter()
                    .map(|loc| {
                        let route = match &loc.handler {
                            Handler::Files(files) => {
                                Route::Files(Arc::new(FilesLocation::new(files.clone())))
                            }
                            Handler::Proxy(proxy) if loc.cache && config.cache.enabled => {
                                Route::CachedProxy(Arc::new(ProxyRoute::new(&loc.prefix, proxy)))
                            }
                            Handler::Proxy(proxy) => {
                                Route::Proxy(Arc::new(ProxyRoute::new(&loc.prefix, proxy)))
                            }
                            Handler::Metrics => Route::Metrics,
                        };
                        (loc.prefix.clone(), route)
                    })
                    .collect();
                locations.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
                VhostRoutes {
                    exact,
                    wildcard,
                    any,
                    locations,
                }
            })
            .collect();
        RouteTable {
            vhosts,
            limits: Arc::new(config.limits.clone()),
        }
    }

    /// The route for a request to `host` (as sent, maybe with a port) and `path`.
    ///
    /// The first vhost whose names match answers; with no match the first vhost is the default
    /// (nginx's `default_server`). Within it the longest location prefix wins.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let vhost = host
            .and_then(|h| {
                // The port is stripped only if some vhost compares names.
                let mut name = None;
                self.vhosts
                    .iter()
                    .find(|v| v.any || v.matches(name.get_or_insert_with(|| strip_port(h))))
            })
            .or_else(|| self.vhosts.first())?;
        vhost
            .locations
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, r)| r)
    }
}

impl VhostRoutes {
    fn matches(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        self.exact.iter().any(|n| n.eq_ignore_ascii_case(host))
            || self.wildcard.iter().any(|suffix| {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            })
    }
}

/// `/static` matches `/static`, `/static/x` but not `/staticfoo`; `/static/` matches `/static/x`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.bytes().rposition(|b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// What a request body is for (see [`Router::body_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// A proxied location: the body streams to the member as it arrives. The limit is the
    /// location's own (`None`: unlimited).
    Stream(Option<u64>),
    /// Collected in memory under `limits.max_body`, then routed with the request.
    Collect,
    /// Nobody reads it (static files, metrics, no route): it is read and dropped as it arrives,
    /// or not read at all where the protocol can stop it, so no connection holds a body in
    /// memory for a service that ignores it. `limits.max_body` still applies.
    Discard,
}

/// The answer to a server-wide OPTIONS (RFC 9110 §9.3.7), the only request a session passes with
/// the target `*`: a ping of the server, not of a resource or an upstream. No `Allow`: the
/// methods differ by location (files take GET and HEAD, proxies forward any).
fn server_wide(req: &Request) -> Option<Response> {
    (req.path == "*").then(|| Response::empty(http::StatusCode::OK))
}

/// The answer to a request no route takes.
fn not_found() -> Response {
    Response::text(http::StatusCode::NOT_FOUND, "404 Not Found\n")
}

/// One worker's entry point to the services.
///
/// Share one `Router` among all of a worker's sessions rather than cloning it per session:
/// actix bounds a mailbox per sending address (capacity + one parked message per sender), so
/// a single shared sender is what makes `limits.service_queue` the real bound.
#[derive(Debug, Clone)]
pub struct Router {
    table: Arc<ArcSwap<RouteTable>>,
    files: Addr<FilesService>,
    /// The read side of this worker's files cache (the [`FilesService`] is its only writer).
    file_cache: FileCache,
    /// `.torrent`/`.magnet` of served files and the tracker, when seeding is enabled.
    torrent: Option<Arc<TorrentStore>>,
    /// The upstream pools, when any are configured.
    proxy: Option<Arc<ProxyService>>,
    /// The response cache of `cache = true` locations (one per process, shared).
    cache: Option<CacheLayer>,
    /// Routes read from Redis (Hipache), consulted before the configured virtual hosts.
    redis: Option<Arc<RedisProxy>>,
}

impl Router {
    /// `file_cache` must be the cache the worker's `files` service fills.
    pub fn new(
        table: Arc<ArcSwap<RouteTable>>,
        files: Addr<FilesService>,
        file_cache: FileCache,
    ) -> Router {
        Router {
            table,
            files,
            file_cache,
            torrent: None,
            proxy: None,
            cache: None,
            redis: None,
        }
    }

    /// Proxy hosts that have a route in Redis to its backends, before the virtual hosts.
    pub fn with_redis_routes(mut self, redis: Arc<RedisProxy>) -> Router {
        self.redis = Some(redis);
        self
    }

    /// Answer `cache = true` proxy locations through `cache`.
    pub fn with_cache(mut self, cache: CacheLayer) -> Router {
        self.cache = Some(cache);
        self
    }

    /// Forward `proxy` locations through these pools.
    pub fn with_proxy(mut self, proxy: Arc<ProxyService>) -> Router {
        self.proxy = Some(proxy);
        self
    }

    /// What the body of a request to `host` and `path` is for, decided from its route before
    /// the body is read.
    pub fn body_use(&self, host: Option<&str>, path: &str) -> BodyUse {
        match self.table.load().route(host, path) {
            Some(Route::Proxy(route) | Route::CachedProxy(route)) => {
                BodyUse::Stream(route.location.max_body)
            }
            // Redis may route the host to its backends, which is known only once it answers:
            // the body streams, to those backends or to a configured route (one that ignores it
            // drops it, and the connection closes after the answer if it was not read whole).
            _ if let Some(redis) = &self.redis => BodyUse::Stream(redis.max_body()),
            _ => BodyUse::Discard,
        }
    }

    /// Answer torrents of served files and the tracker from `store`.
    pub fn with_torrent(mut self, store: Option<Arc<TorrentStore>>) -> Router {
        self.torrent = store;
        self
    }

    /// Answer `req` without waiting, if it can be: a static file in the worker's cache (checked
    /// within `file_revalidate`, bytes in memory), a fresh hit of the response cache, the
    /// metrics, a 404. `None` means [`Router::call`] must route it: it needs a service, an
    /// upstream or Redis.
    ///
    /// The HTTP/1.1 session tries this first, so that most requests to static sites are
    /// answered with no future made for them at all. (HTTP/2 and HTTP/3 streams each have a
    /// task anyway, and [`Router::call`] answers the same requests within its first poll.)
    pub fn answer_now(&self, req: &Request) -> Option<Response> {
        if let Some(pong) = server_wide(req) {
            return Some(pong);
        }
        // Redis may route any host: it is asked first, and that takes a round trip.
        if self.redis.is_some() {
            return None;
        }
        match self.route(req) {
            Some((route, limits)) => self.answer_route_now(req, &route, &limits),
            None => Some(not_found()),
        }
    }

    /// `req`'s route and the limits that go with it.
    fn route(&self, req: &Request) -> Option<(Route, Arc<Limits>)> {
        let table = self.table.load();
        let route = table.route(req.host.as_deref(), &req.path)?;
        Some((route.clone(), table.limits.clone()))
    }

    /// The answer to `req` on `route` that needs no waiting, if there is one.
    fn answer_route_now(&self, req: &Request, route: &Route, limits: &Limits) -> Option<Response> {
        match route {
            Route::Metrics => Some(crate::metrics::answer(req)),
            // Torrents of served files and the tracker come first, and are answered by a task.
            Route::Files(_) if self.torrent.is_some() && torrent_http::wants(&req.path) => None,
            Route::Files(cfg) => self.cached_file(req, cfg, limits),
            Route::CachedProxy(_) => match (&self.proxy, &self.cache) {
                (Some(_), Some(cache)) => cache.fresh_hit(req),
                _ => None,
            },
            Route::Proxy(_) => None,
        }
    }

    /// A static file from the worker's cache. A panic there answers 500, and the cache is
    /// emptied in case what it holds caused it.
    fn cached_file(&self, req: &Request, cfg: &FilesLocation, limits: &Limits) -> Option<Response> {
        supervised(
            "files",
            || serve_from_memory(req, cfg, limits, &self.file_cache),
            || {
                self.file_cache.clear();
                Some(Response::internal_error())
            },
        )
    }

    /// Route `req` and await its answer.
    ///
    /// Crosses at most one mailbox. What [`Router::answer_now`] answers is answered here the
    /// same way, with no hop and no I/O; everything else goes to the service actor that owns the
    /// cache and the filesystem work, or upstream. A full mailbox answers 503 at once instead of
    /// queueing; a service that dropped the request (it panicked, or stopped) answers 500.
    pub async fn call(&self, mut req: Request) -> Response {
        if let Some(pong) = server_wide(&req) {
            return pong;
        }
        // Given back by the Redis routes when they do not answer; without them the request stays
        // where it is (a new binding would copy it within this future).
        if let Some(redis) = &self.redis {
            match Box::pin(redis.handle(req)).await {
                Ok(response) => return response,
                Err(back) => req = back,
            }
        }
        let Some((route, limits)) = self.route(&req) else {
            return not_found();
        };
        // The answer is a temporary of its `if let`, so it takes no room in this future across
        // the waits below.
        if let Some(response) = self.answer_route_now(&req, &route, &limits) {
            return response;
        }
        let cfg = match route {
            Route::Files(cfg) => cfg,
            Route::Metrics => return crate::metrics::answer(&req),
            Route::CachedProxy(route)
                if let (Some(proxy), Some(cache)) = (&self.proxy, &self.cache) =>
            {
                return Box::pin(crate::proxy_cache::serve(cache, proxy.clone(), route, req)).await;
            }
            Route::Proxy(route) | Route::CachedProxy(route) => {
                return match &self.proxy {
                    Some(proxy) => Box::pin(proxy.forward(&route, req)).await,
                    None => Response::text(
                        http::StatusCode::BAD_GATEWAY,
                        "502 Bad Gateway: no upstreams are running\n",
                    ),
                };
            }
        };
        if let Some(store) = &self.torrent
            && torrent_http::wants(&req.path)
        {
            if let Some(response) = Box::pin(torrent_http::intercept(store, &req, &cfg)).await {
                return response;
            }
            if let Some(response) = self.cached_file(&req, &cfg, &limits) {
                return response;
            }
        }
        let (reply, answer) = oneshot::channel();
        if let Err(err) = self.files.try_send(FilesCall {
            req,
            cfg,
            limits,
            reply,
        }) {
            tracing::warn!(error = %err, "service mailbox refused a request");
            return Response::overloaded();
        }
        answer.await.unwrap_or_else(|_| Response::internal_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use switchyard_conf::{Location, VirtualHost};

    fn config(vhosts: Vec<(Vec<&str>, Vec<&str>)>) -> Config {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let mut cfg =
            Config::serve_dir(std::path::Path::new("."), addr).expect("cwd is a directory");
        cfg.vhosts = vhosts
            .into_iter()
            .enumerate()
            .map(|(i, (names, prefixes))| VirtualHost {
                names: names.into_iter().map(str::to_owned).collect(),
                locations: prefixes
                    .into_iter()
                    .map(|p| Location {
                        prefix: p.to_owned(),
                        handler: Handler::Files(switchyard_conf::FilesConfig::new(
                            format!("/srv/{i}{p}").into(),
                        )),
                        cache: false,
                    })
                    .collect(),
            })
            .collect();
        cfg
    }

    fn root_of(route: Option<&Route>) -> Option<String> {
        route.and_then(|r| match r {
            Route::Files(f) => Some(f.root.display().to_string()),
            Route::Proxy(_) | Route::CachedProxy(_) | Route::Metrics => None,
        })
    }

    #[test]
    fn host_selects_vhost_and_longest_prefix_wins() {
        let table = RouteTable::new(&config(vec![
            (vec!["a.test"], vec!["/", "/static/"]),
            (vec!["*.b.test"], vec!["/", "/api"]),
            (vec!["*"], vec!["/"]),
        ]));
        let cases = [
            (Some("a.test"), "/x", Some("/srv/0/")),
            (
                Some("A.TEST:8080"),
                "/static/app.js",
                Some("/srv/0/static/"),
            ),
            (Some("a.test"), "/staticx", Some("/srv/0/")),
            (Some("www.b.test"), "/api", Some("/srv/1/api")),
            (Some("www.b.test"), "/api/v1", Some("/srv/1/api")),
            (Some("www.b.test"), "/apis", Some("/srv/1/")),
            (Some("b.test"), "/", Some("/srv/2/")),
            (Some("[::1]:80"), "/", Some("/srv/2/")),
            (None, "/", Some("/srv/0/")),
        ];
        for (host, path, want) in cases {
            assert_eq!(
                root_of(table.route(host, path)).as_deref(),
                want,
                "{host:?} {path}"
            );
        }
    }

    #[test]
    fn unknown_host_falls_back_to_first_vhost() {
        let table = RouteTable::new(&config(vec![
            (vec!["a.test"], vec!["/"]),
            (vec!["b.test"], vec!["/"]),
        ]));
        assert_eq!(
            root_of(table.route(Some("c.test"), "/")).as_deref(),
            Some("/srv/0/")
        );
    }

    #[test]
    fn no_matching_location_is_none() {
        let table = RouteTable::new(&config(vec![(vec![], vec!["/only"])]));
        assert!(table.route(Some("x"), "/other").is_none());
    }

    mod dispatch {
        use super::*;
        use crate::files::FileCache;
        use http::StatusCode;

        fn request(path: &str) -> Request {
            Request {
                method: http::Method::GET,
                path: path.to_owned(),
                query: None,
                version: http::Version::HTTP_11,
                host: Some("localhost".to_owned()),
                headers: http::HeaderMap::new(),
                scheme: "http",
                peer: "127.0.0.1:1".parse().expect("literal address"),
                body: bytes::Bytes::new(),
                stream: None,
            }
        }

        fn router(dir: &std::path::Path, service_queue: usize, panic_path: Option<&str>) -> Router {
            router_with(dir, service_queue, panic_path, FileCache::new(1 << 20))
        }

        fn router_with(
            dir: &std::path::Path,
            service_queue: usize,
            panic_path: Option<&str>,
            cache: FileCache,
        ) -> Router {
            std::fs::write(dir.join("a.txt"), "hello").expect("write fixture");
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
            let config = Config::serve_dir(dir, addr).expect("temp dir exists");
            let files = FilesService::new(cache.clone(), panic_path.map(Arc::from))
                .start_bounded(service_queue);
            let table = Arc::new(ArcSwap::from_pointee(RouteTable::new(&config)));
            Router::new(table, files, cache)
        }

        #[actix_rt::test]
        async fn bodies_to_static_files_are_discarded() {
            let dir = tempfile::tempdir().expect("temp dir");
            let router = router(dir.path(), 1, None);
            assert_eq!(router.body_use(None, "/a.txt"), BodyUse::Discard);
            assert_eq!(router.body_use(Some("any"), "/"), BodyUse::Discard);
        }

        /// A session's future embeds the router's: every connection, idle ones included,
        /// holds that much memory for its whole life, so the proxy, cache and Redis paths
        /// (whose futures hold a whole upstream exchange) are boxed where they start.
        #[actix_rt::test]
        async fn a_call_in_flight_is_small() {
            let dir = tempfile::tempdir().expect("temp dir");
            let router = router(dir.path(), 1, None);
            let call = router.call(request("/a.txt"));
            let size = std::mem::size_of_val(&call);
            assert!(size <= 768, "Router::call future is {size} bytes");
        }

        /// What needs no waiting is answered at once; what needs the files service is left to
        /// `call`, which then fills the cache for the next time.
        #[actix_rt::test]
        async fn answer_now_answers_what_needs_no_service() {
            let dir = tempfile::tempdir().expect("temp dir");
            let cache = FileCache::with_revalidate(1 << 20, std::time::Duration::from_secs(3600));
            let router = router_with(dir.path(), 1, None, cache);
            assert!(
                router.answer_now(&request("/a.txt")).is_none(),
                "a file not yet cached needs the service"
            );
            assert_eq!(router.call(request("/a.txt")).await.status, StatusCode::OK);
            let hit = router.answer_now(&request("/a.txt")).expect("cached now");
            assert_eq!(hit.status, StatusCode::OK);
            assert_eq!(hit.body.len(), 5);
            let mut post = request("/a.txt");
            post.method = http::Method::POST;
            let refused = router
                .answer_now(&post)
                .expect("a refused method needs no service");
            assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
            let mut star = request("*");
            star.method = http::Method::OPTIONS;
            assert_eq!(
                router.answer_now(&star).map(|r| r.status),
                Some(StatusCode::OK)
            );
            let mut elsewhere = request("/a.txt");
            elsewhere.host = Some("unknown.example".to_owned());
            let routed = router.answer_now(&elsewhere).map(|r| r.status);
            // `serve` answers every host with its one site.
            assert_eq!(routed, Some(StatusCode::OK));
        }

        #[actix_rt::test]
        async fn cached_files_are_answered_without_the_mailbox() {
            let dir = tempfile::tempdir().expect("temp dir");
            let cache = FileCache::with_revalidate(1 << 20, std::time::Duration::from_secs(3600));
            let router = std::rc::Rc::new(router_with(dir.path(), 1, None, cache));
            // The first request goes through the service, which fills the cache.
            assert_eq!(router.call(request("/a.txt")).await.status, StatusCode::OK);
            // With a mailbox of one, a burst would be refused (see the test above) if it
            // queued; hits are served from the cache's read side and never are.
            let calls: Vec<_> = (0..16)
                .map(|_| {
                    let router = router.clone();
                    actix_rt::spawn(async move { router.call(request("/a.txt")).await.status })
                })
                .collect();
            for call in calls {
                assert_eq!(call.await.expect("call task"), StatusCode::OK);
            }
            // A file not in the cache still takes the mailbox and is refused when it is full.
            std::fs::write(dir.path().join("b.txt"), "b").expect("write fixture");
            let calls: Vec<_> = (0..16)
                .map(|_| {
                    let router = router.clone();
                    actix_rt::spawn(async move { router.call(request("/b.txt")).await.status })
                })
                .collect();
            let mut refused = 0;
            for call in calls {
                if call.await.expect("call task") == StatusCode::SERVICE_UNAVAILABLE {
                    refused += 1;
                }
            }
            assert!(refused > 0, "misses must queue in the bounded mailbox");
        }

        #[actix_rt::test]
        async fn a_full_mailbox_answers_503_instead_of_queueing() {
            let dir = tempfile::tempdir().expect("temp dir");
            // One `Router` per worker is shared by all its sessions (never cloned per session):
            // actix bounds a mailbox per sending address.
            let router = std::rc::Rc::new(router(dir.path(), 1, None));
            // All calls are issued before the service runs once, so only the mailbox's
            // capacity can be accepted; the rest must be refused at once.
            let calls: Vec<_> = (0..16)
                .map(|_| {
                    let router = router.clone();
                    actix_rt::spawn(async move { router.call(request("/a.txt")).await.status })
                })
                .collect();
            let mut statuses = Vec::new();
            for call in calls {
                statuses.push(call.await.expect("call task"));
            }
            let refused = statuses
                .iter()
                .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
                .count();
            let served = statuses.iter().filter(|s| **s == StatusCode::OK).count();
            assert!(refused > 0, "no request was refused: {statuses:?}");
            assert!(served > 0, "no request was served: {statuses:?}");
            assert_eq!(refused + served, statuses.len(), "{statuses:?}");
            // Once the queue has drained, the service answers normally again.
            assert_eq!(router.call(request("/a.txt")).await.status, StatusCode::OK);
        }

        #[actix_rt::test]
        async fn a_panic_answers_500_and_the_service_keeps_serving() {
            let dir = tempfile::tempdir().expect("temp dir");
            let router = router(dir.path(), 16, Some("/boom"));
            let before = crate::actor::SERVICE_RESTARTS.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(router.call(request("/a.txt")).await.status, StatusCode::OK);
            assert_eq!(
                router.call(request("/boom")).await.status,
                StatusCode::INTERNAL_SERVER_ERROR
            );
            assert_eq!(router.call(request("/a.txt")).await.status, StatusCode::OK);
            let after = crate::actor::SERVICE_RESTARTS.load(std::sync::atomic::Ordering::Relaxed);
            assert!(after > before, "the restart was not counted");
        }
    }
}
