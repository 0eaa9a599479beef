//! Virtual hosts and backends read from Redis the way Hipache stores them, so many Switchyard
//! instances share one route table ([`hipache`] has the layout).
//!
//! [`RedisRoutes::lookup`] answers from an in-memory LRU (moka, bounded by
//! `cache_entries`). An answer is trusted for at most `cache_ttl`; sooner than that, Redis
//! keyspace notifications (`__keyspace@DB__:<prefix>frontend:*` and `...dead:*`) drop the
//! entries a change affects, so an edit of a `frontend:` list or a `dead:` set applies within
//! about a round trip. At start the provider enables the notification classes it needs
//! (`CONFIG SET notify-keyspace-events`, keeping the server's other flags); when the server
//! refuses `CONFIG` (a managed Redis), a warning says so and changes then apply within
//! `cache_ttl`.
//!
//! When Redis is unreachable, lookups keep answering from the cached routes however old they
//! are (and [`Unavailable`] for hosts never looked up), the failure is logged, and a background
//! task reconnects with exponential backoff (100 ms doubling to 5 s). A lookup that fails or
//! waits more than a second drops the connection at once, so an unresponsive Redis costs one
//! such wait, not one per request. After a reconnect every
//! cached route is fetched again on its next use, since notifications may have been missed.
//!
//! Dead marks: [`RedisRoutes::mark_dead`] writes a backend's position into the host's `dead:`
//! set with an expiry (`dead_ttl`) and publishes Hipache's `dead` announcement, so health
//! checks of any instance take the backend out for all of them.
//!
//! Not here: choosing among the alive backends and proxying (the proxy's balancers do that).

pub mod hipache;
pub mod proxy;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moka::sync::Cache;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use switchyard_conf::RedisRoutesConfig;

pub use hipache::{Backend, Route};
use hipache::{Changed, Keys, candidates, normalize_host, notify_flags};

/// How long one lookup may wait for Redis before the cached answer is used.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Connecting (TCP and the first replies) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Redis could not be asked and nothing is cached for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Redis route table is unreachable and this host's route is not cached")
    }
}

impl std::error::Error for Unavailable {}

/// The route provider. Cheap to clone; the background connection task stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RedisRoutes {
    shared: Arc<Shared>,
    _watcher: Arc<AbortOnDrop>,
}

impl fmt::Debug for RedisRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRoutes")
            .field("url", &self.shared.config.url)
            .field("connected", &self.is_connected())
            .field("cached", &self.shared.cache.entry_count())
            .finish()
    }
}

struct Shared {
    keys: Keys,
    config: RedisRoutesConfig,
    client: redis::Client,
    /// The command connection of the current session with Redis; `None` while disconnected.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Host → its route (or the knowledge that it has none), with when it was fetched.
    cache: Cache<String, Cached>,
    /// Bumped on (re)connect: entries of an older generation are fetched again on use.
    generation: AtomicU64,
    /// Bumped on every notification: a fetch that raced with a change is not cached.
    changes: AtomicU64,
    connected: AtomicBool,
    /// Successful connections so far (the first one included).
    sessions: AtomicU64,
    /// A lookup or write failed on the current connection: the connection task drops it and
    /// reconnects (a half-open connection would otherwise go unnoticed by the subscription).
    broken: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
struct Cached {
    route: Option<Arc<Route>>,
    fetched: Instant,
    generation: u64,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisRoutes {
    /// Start the provider: the connection task begins at once (in the current tokio runtime)
    /// and keeps reconnecting; lookups work from the first successful connection on.
    ///
    /// Fails only when the URL cannot be used at all.
    pub fn start(config: &RedisRoutesConfig) -> Result<RedisRoutes, redis::RedisError> {
        let url = format!("{}/{}", config.url.trim_end_matches('/'), config.db);
        let client = redis::Client::open(url)?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.prefix, config.db),
            config: config.clone(),
            client,
            conn: Mutex::new(None),
            cache: Cache::builder().max_capacity(config.cache_entries).build(),
            generation: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            sessions: AtomicU64::new(0),
            broken: tokio::sync::Notify::new(),
        });
        let watcher = tokio::spawn(watch(shared.clone()));
        Ok(RedisRoutes {
            shared,
            _watcher: Arc::new(AbortOnDrop(watcher)),
        })
    }

    /// Whether the provider currently has a live connection (and notification subscription).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// How many times a connection was established (1 after the first connect).
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::SeqCst)
    }

    /// The route for a request's `host` (port and case ignored), `Ok(None)` when Redis has no
    /// frontend for it.
    pub async fn lookup(&self, host: &str) -> Result<Option<Arc<Route>>, Unavailable> {
        let shared = &self.shared;
        let host = normalize_host(host);
        let generation = shared.generation.load(Ordering::SeqCst);
        let cached = shared.cache.get(&host);
        if let Some(c) = &cached
            && c.generation == generation
            && c.fetched.elapsed() < shared.config.cache_ttl
        {
            return Ok(c.route.clone());
        }
        let stale = || cached.as_ref().map(|c| c.route.clone()).ok_or(Unavailable);
        let Some(mut conn) = shared.connection() else {
            return stale();
        };
        let changes = shared.changes.load(Ordering::SeqCst);
        match tokio::time::timeout(QUERY_TIMEOUT, shared.fetch(&mut conn, &host)).await {
            Ok(Ok(route)) => {
                if shared.changes.load(Ordering::SeqCst) == changes {
                    shared.cache.insert(
                        host,
                        Cached {
                            route: route.clone(),
                            fetched: Instant::now(),
                            generation,
                        },
                    );
                }
                Ok(route)
            }
            Ok(Err(e)) => {
                tracing::warn!(%host, error = %e, "redis routes: lookup failed; using the cached route");
                shared.connection_failed();
                stale()
            }
            Err(_) => {
                tracing::warn!(%host, "redis routes: lookup timed out; using the cached route");
                shared.connection_failed();
                stale()
            }
        }
    }

    /// Mark `route`'s backend at `index` dead for every instance sharing this Redis, for
    /// `dead_ttl` (Hipache's `SADD dead:<host>` + `EXPIRE` + `PUBLISH dead`).
    pub async fn mark_dead(&self, route: &Route, index: usize) -> Result<(), Unavailable> {
        let shared = &self.shared;
        let Some(backend) = route.backends.get(index) else {
            return Ok(());
        };
        let key = shared.keys.dead(&route.host);
        let ttl_ms = u64::try_from(shared.config.dead_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SADD")
            .arg(&key)
            .arg(index)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms)
            .ignore()
            .cmd("PUBLISH")
            .arg("dead")
            .arg(route.dead_announcement(backend))
            .ignore();
        shared.write(&pipe, "mark dead").await
    }

    /// Take the mark off `route`'s backend at `index` (its health check passed again).
    pub async fn mark_alive(&self, route: &Route, index: usize) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        pipe.cmd("SREM")
            .arg(self.shared.keys.dead(&route.host))
            .arg(index)
            .ignore();
        self.shared.write(&pipe, "mark alive").await
    }
}

impl Shared {
    fn connection(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_connection(&self, conn: Option<MultiplexedConnection>) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    /// Stop using the current connection at once (later lookups answer from the cache without
    /// waiting) and have the connection task reconnect.
    fn connection_failed(&self) {
        if self.connected.swap(false, Ordering::SeqCst) {
            self.set_connection(None);
            self.broken.notify_one();
        }
    }

    /// One round trip: the `frontend:` list and `dead:` set of every candidate name. The
    /// host's own `dead:` set (the first candidate's) applies whichever frontend matches.
    async fn fetch(
        &self,
        conn: &mut MultiplexedConnection,
        host: &str,
    ) -> redis::RedisResult<Option<Arc<Route>>> {
        let names = candidates(host);
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("LRANGE")
                .arg(self.keys.frontend(name))
                .arg(0)
                .arg(-1)
                .cmd("SMEMBERS")
                .arg(self.keys.dead(name));
        }
        let rows: Vec<Vec<String>> = pipe.query_async(conn).await?;
        let host_dead = rows.get(1).cloned().unwrap_or_default();
        Ok(names.iter().enumerate().find_map(|(i, name)| {
            let list = rows.get(2 * i)?;
            let mut dead = host_dead.clone();
            if i > 0 {
                dead.extend(rows.get(2 * i + 1)?.iter().cloned());
            }
            Route::parse(host, name, list, &dead).map(Arc::new)
        }))
    }

    async fn write(&self, pipe: &redis::Pipeline, what: &str) -> Result<(), Unavailable> {
        let Some(mut conn) = self.connection() else {
            tracing::warn!(what, "redis routes: not connected; mark not written");
            return Err(Unavailable);
        };
        match tokio::time::timeout(QUERY_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(what, error = %e, "redis routes: write failed");
                self.connection_failed();
                Err(Unavailable)
            }
            Err(_) => {
                tracing::warn!(what, "redis routes: write timed out");
                self.connection_failed();
                Err(Unavailable)
            }
        }
    }

    /// A notification on `channel`: forget the routes the change can affect.
    fn on_notification(&self, channel: &str) {
        let Some(changed) = self.keys.changed(channel) else {
            return;
        };
        self.changes.fetch_add(1, Ordering::SeqCst);
        let (Changed::Frontend(name) | Changed::Dead(name)) = changed;
        if name.starts_with('*') {
            // A wildcard can serve any number of hosts; changes to one are rare.
            self.cache.invalidate_all();
        } else {
            self.cache.invalidate(&name);
        }
    }

    /// Connect, make sure keyspace notifications are on, subscribe. Returns the messages.
    async fn session(&self) -> redis::RedisResult<redis::aio::PubSubStream> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.enable_notifications(&mut conn).await;
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| timeout_error("connecting for notifications"))??;
        for pattern in self.keys.patterns() {
            pubsub.psubscribe(&pattern).await?;
        }
        self.set_connection(Some(conn));
        Ok(pubsub.into_on_message())
    }

    async fn enable_notifications(&self, conn: &mut MultiplexedConnection) {
        let current: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(conn)
            .await;
        let result = match current {
            Ok(pair) => match notify_flags(pair.get(1).map_or("", String::as_str)) {
                None => Ok(()),
                Some(flags) => redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(&flags)
                    .query_async::<()>(conn)
                    .await
                    .map(
                        |()| tracing::info!(%flags, "redis routes: keyspace notifications enabled"),
                    ),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(
                error = %e,
                ttl = ?self.config.cache_ttl,
                "redis routes: cannot enable keyspace notifications (set notify-keyspace-events to include Kglsx); changes apply after the cache ttl"
            );
        }
    }
}

fn timeout_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// The connection task: connect, listen to notifications until the connection drops, back off,
/// repeat. Lookups meanwhile answer from the cache.
async fn watch(shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match shared.session().await {
            Ok(mut messages) => {
                backoff = MIN_BACKOFF;
                // Subscribed before this: no change after this point goes unnoticed; changes
                // while we were away might have, so every cached route is fetched again.
                shared.generation.fetch_add(1, Ordering::SeqCst);
                shared.connected.store(true, Ordering::SeqCst);
                let sessions = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!(url = %shared.config.url, sessions, "redis routes: connected");
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => shared.on_notification(message.get_channel_name()),
                            None => break,
                        },
                        () = shared.broken.notified() => break,
                    }
                }
                shared.connected.store(false, Ordering::SeqCst);
                shared.set_connection(None);
                tracing::warn!(url = %shared.config.url, "redis routes: connection lost; serving cached routes, reconnecting");
            }
            Err(e) => {
                tracing::warn!(url = %shared.config.url, error = %e, retry_in = ?backoff, "redis routes: cannot connect; serving cached routes");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
