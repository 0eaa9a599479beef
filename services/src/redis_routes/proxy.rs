//! Proxying to the backends of routes read from Redis.
//!
//! Precedence, as a Hipache user expects: a host with a `frontend:` entry (its own, or a
//! wildcard's) is proxied to that entry's backends, before the configured virtual hosts are
//! looked at; a host Redis has no frontend for is routed by the configured virtual hosts. When
//! Redis cannot be asked and the host's route was never cached, the configured virtual hosts
//! answer too (and the failure is logged by the provider).
//!
//! Each route gets a pool of its alive backends, created on first use with the proxy's
//! defaults (round robin, keep-alive connections, failover to the next backend for idempotent
//! requests) and kept while the route stays the same; a changed route (an edited list, a new
//! dead mark) gets a new pool and the old one's connections close. At most [`MAX_POOLS`] pools
//! are kept. A backend that fails (connect error, reset, timeout, a 502/503/504) is taken out
//! of its pool at once and marked dead in Redis (`dead:<host>`, expiring after `dead_ttl`) so
//! every instance sharing the Redis stops using it.
//!
//! Request bodies stream to the backends as they arrive, as for a configured proxy location,
//! under `[redis_routes] max_body` (unlimited by default). Whether a host is Redis-routed is
//! known only once Redis answered, so with Redis routes every request body streams: a host
//! that falls through to a configured route that ignores bodies (static files) drops it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use switchyard_conf::{PassiveHealth, ProxyLocation, Upstream, parse_member};

use super::{RedisRoutes, Route};
use crate::message::{Request, Response};
use crate::proxy::upstream::{UpstreamState, now_ms};
use crate::proxy::{ProxyRoute, ProxyService};

/// Pools kept for Redis routes; beyond this, one is dropped for each new one.
pub const MAX_POOLS: usize = 1024;

/// Redis routes and the pools of their backends. One per process, shared by the workers.
#[derive(Debug)]
pub struct RedisProxy {
    routes: RedisRoutes,
    proxy: Arc<ProxyService>,
    location: ProxyRoute,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

/// The pool of one route's alive backends.
#[derive(Debug)]
struct Pool {
    route: Arc<Route>,
    up: Arc<UpstreamState>,
    /// The route's backend index of each member, in member order.
    backends: Vec<usize>,
    /// Whether this instance already marked the member dead.
    marked: Vec<AtomicBool>,
}

impl RedisProxy {
    /// `max_body` bounds the request bodies of Redis-routed hosts (`None`: no bound).
    pub fn new(routes: RedisRoutes, proxy: Arc<ProxyService>, max_body: Option<u64>) -> RedisProxy {
        let mut location = ProxyLocation::new("redis_routes");
        location.max_body = max_body;
        RedisProxy {
            routes,
            proxy,
            location: ProxyRoute::new("/", &location),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The largest request body a Redis-routed host takes (`None`: no limit).
    pub fn max_body(&self) -> Option<u64> {
        self.location.location.max_body
    }

    pub fn routes(&self) -> &RedisRoutes {
        &self.routes
    }

    /// Proxy `req` when Redis has a route for its host; otherwise hand it back.
    pub async fn handle(&self, req: Request) -> Result<Response, Request> {
        let Some(host) = req.host.as_deref() else {
            return Err(req);
        };
        let route = match self.routes.lookup(host).await {
            Ok(Some(route)) => route,
            Ok(None) | Err(_) => return Err(req),
        };
        let pool = match self.pool(&route) {
            Ok(pool) => pool,
            Err(why) => return Ok(error(StatusCode::BAD_GATEWAY, why)),
        };
        let response = self
            .proxy
            .forward_to(pool.up.clone(), &self.location, req)
            .await;
        self.report_dead(&pool);
        Ok(response)
    }

    /// The pool for `route`, made (or remade, when the route changed) as needed.
    fn pool(&self, route: &Arc<Route>) -> Result<Arc<Pool>, String> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(&route.host)
            && (Arc::ptr_eq(&pool.route, route) || *pool.route == **route)
        {
            return Ok(pool.clone());
        }
        let pool = Arc::new(build(route)?);
        if pools.len() >= MAX_POOLS && !pools.contains_key(&route.host) {
            if let Some(victim) = pools.keys().next().cloned() {
                pools.remove(&victim);
            }
        }
        tracing::info!(route = %route, "redis routes: pool ready");
        pools.insert(route.host.clone(), pool.clone());
        Ok(pool)
    }

    /// Members the proxy took out after failures are marked dead in Redis, once each.
    fn report_dead(&self, pool: &Arc<Pool>) {
        let now = now_ms();
        let set = pool.up.set.load();
        for (i, member) in set.members.iter().enumerate() {
            if member.down_until.load(Ordering::Relaxed) <= now
                || pool.marked[i].swap(true, Ordering::SeqCst)
            {
                continue;
            }
            let (routes, route, index) =
                (self.routes.clone(), pool.route.clone(), pool.backends[i]);
            tracing::warn!(host = %route.host, backend = %route.backends[index].url, "redis routes: backend failed; marking it dead");
            actix_rt::spawn(async move {
                if routes.mark_dead(&route, index).await.is_err() {
                    tracing::warn!(host = %route.host, "redis routes: could not write the dead mark");
                }
            });
        }
    }
}

fn build(route: &Arc<Route>) -> Result<Pool, String> {
    let mut members = Vec::new();
    let mut authorities: Vec<(String, usize)> = Vec::new();
    for backend in route.alive() {
        match parse_member(&backend.url) {
            Ok(member) => {
                authorities.push((member.authority(), backend.index));
                members.push(member);
            }
            Err(e) => {
                tracing::warn!(host = %route.host, error = %e, "redis routes: unusable backend URL skipped");
            }
        }
    }
    if members.is_empty() {
        return Err(if route.alive().next().is_none() {
            format!("every backend of {:?} is marked dead", route.host)
        } else {
            format!("no usable backend URL for {:?}", route.host)
        });
    }
    let tries = members.len().min(3);
    let mut conf = Upstream::with_members(&format!("redis:{}", route.host), members);
    conf.max_tries = tries;
    // Hipache takes a backend out on its first failure.
    conf.passive = PassiveHealth {
        failures: 1,
        window: Duration::from_secs(10),
        cooldown: Duration::from_secs(30),
    };
    let up = UpstreamState::new(conf).map_err(|e| format!("backends of {:?}: {e}", route.host))?;
    let count = up.set.load().members.len();
    let up = Arc::new(up);
    if count == 0 {
        return Err(format!(
            "the backends of {:?} resolve to no address",
            route.host
        ));
    }
    Ok(Pool {
        route: route.clone(),
        backends: set_backends(&up, &authorities),
        up,
        marked: (0..count).map(|_| AtomicBool::new(false)).collect(),
    })
}

/// The route's backend index of each resolved member (a host name may resolve to several
/// addresses, all of one backend).
fn set_backends(up: &UpstreamState, authorities: &[(String, usize)]) -> Vec<usize> {
    up.set
        .load()
        .members
        .iter()
        .map(|m| {
            authorities
                .iter()
                .find(|(a, _)| *a == m.authority)
                .map_or(0, |(_, index)| *index)
        })
        .collect()
}

fn error(status: StatusCode, why: String) -> Response {
    let mut r = Response::text(status, "");
    r.body = crate::message::Body::Bytes(bytes::Bytes::from(format!(
        "{} {}: {why}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )));
    r
}
