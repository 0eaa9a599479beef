//! `[redis_routes]`: virtual hosts and their backends read from Redis, the way Hipache stores
//! them, so many instances share one route table. Absent: no Redis is contacted.
//!
//! Merged like `[limits]`: for each key the last file that sets it wins.
//!
//! ```toml
//! [redis_routes]
//! url = "redis://127.0.0.1:6379"  # required: redis://[user:password@]host[:port]
//! db = 0                          # database number, 0..=15 by Redis's default; default 0
//! prefix = ""                     # key prefix: "<prefix>frontend:<host>", "<prefix>dead:<host>"
//! cache_ttl = "10s"               # a looked-up route is trusted at most this long (keyspace
//!                                 # notifications invalidate it sooner); > 0
//! cache_entries = 10000           # routes kept (LRU); > 0
//! dead_ttl = "30s"                # how long a dead mark written by this instance lasts; > 0
//! max_body = "0"                  # request body limit of Redis-routed hosts; 0 (default) =
//!                                 # unlimited. Bodies stream to the backend either way.
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::ConfError;
use crate::source::Source;
use crate::units::parse_duration;
use crate::validate::{At, last};

/// `[redis_routes]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedisRoutes {
    pub url: Option<Spanned<String>>,
    pub db: Option<Spanned<i64>>,
    pub prefix: Option<Spanned<String>>,
    pub cache_ttl: Option<Spanned<String>>,
    pub cache_entries: Option<Spanned<i64>>,
    pub dead_ttl: Option<Spanned<String>>,
    pub max_body: Option<Spanned<crate::raw::RawSize>>,
}

/// The validated `[redis_routes]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisRoutesConfig {
    /// `redis://host:port` (no database path: that is [`RedisRoutesConfig::db`]).
    pub url: String,
    /// The Redis database holding the keys (`SELECT`; keyspace channels are `__keyspace@DB__`).
    pub db: u32,
    /// Prepended to every key, as Hipache's `redisPrefix` (empty by default).
    pub prefix: String,
    /// Upper bound on how long a cached lookup is used without asking Redis again.
    pub cache_ttl: Duration,
    /// Most hosts whose routes are cached.
    pub cache_entries: u64,
    /// Expiry of the `dead:<frontend>` set when this instance marks a backend dead (Hipache's
    /// `deadBackendTTL`).
    pub dead_ttl: Duration,
    /// Largest request body accepted for a Redis-routed host (`None`: no limit), as a proxy
    /// location's `max_body`: the body streams to the backend, and a longer one is cut off
    /// with 413.
    pub max_body: Option<u64>,
}

impl RedisRoutesConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisRoutesConfig {
            url: url.into(),
            db: 0,
            prefix: String::new(),
            cache_ttl: Duration::from_secs(10),
            cache_entries: 10_000,
            dead_ttl: Duration::from_secs(30),
            max_body: None,
        }
    }
}

fn key<'a, T>(
    sources: &'a [Source],
    get: impl Fn(&'a RawRedisRoutes) -> Option<&'a Spanned<T>>,
) -> Option<At<'a, T>> {
    last(sources, |f| f.redis_routes.as_ref().and_then(&get))
}

/// Merge and validate `[redis_routes]`; `None` when no file has the section.
pub(crate) fn redis_routes(sources: &[Source]) -> Result<Option<RedisRoutesConfig>, ConfError> {
    let Some(section) = sources.iter().rev().find(|s| s.raw.redis_routes.is_some()) else {
        return Ok(None);
    };
    let Some(url) = key(sources, |r| r.url.as_ref()) else {
        return Err(ConfError::new(format!(
            "{}: redis_routes.url: missing (e.g. url = \"redis://127.0.0.1:6379\")",
            section.path.display()
        )));
    };
    let text = url.value();
    let Some(rest) = text.strip_prefix("redis://") else {
        return Err(url.error(
            "redis_routes.url",
            format_args!("{text:?}: expected redis://host[:port]"),
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('?') {
        return Err(url.error(
            "redis_routes.url",
            format_args!("{text:?}: expected redis://host[:port] (the database goes in `db`)"),
        ));
    }
    let mut config = RedisRoutesConfig::new(format!("redis://{authority}"));
    if let Some(at) = key(sources, |r| r.db.as_ref()) {
        config.db = u32::try_from(*at.value())
            .map_err(|_| at.error("redis_routes.db", "must be 0 or more"))?;
    }
    if let Some(at) = key(sources, |r| r.prefix.as_ref()) {
        config.prefix.clone_from(at.value());
    }
    if let Some(at) = key(sources, |r| r.cache_entries.as_ref()) {
        config.cache_entries = match u64::try_from(*at.value()) {
            Ok(0) | Err(_) => {
                return Err(at.error("redis_routes.cache_entries", "must be greater than 0"));
            }
            Ok(n) => n,
        };
    }
    for (name, slot) in [
        ("cache_ttl", &mut config.cache_ttl),
        ("dead_ttl", &mut config.dead_ttl),
    ] {
        let at = match name {
            "cache_ttl" => key(sources, |r| r.cache_ttl.as_ref()),
            _ => key(sources, |r| r.dead_ttl.as_ref()),
        };
        if let Some(at) = at {
            let k = format!("redis_routes.{name}");
            let value = parse_duration(at.value()).map_err(|e| at.error(&k, e))?;
            if value.is_zero() {
                return Err(at.error(&k, "must be greater than 0"));
            }
            *slot = value;
        }
    }
    if let Some(at) = key(sources, |r| r.max_body.as_ref()) {
        let v = at
            .value()
            .bytes()
            .map_err(|e| at.error("redis_routes.max_body", e))?;
        config.max_body = (v > 0).then_some(v);
    }
    Ok(Some(config))
}
