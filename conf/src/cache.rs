//! `[cache]`: the HTTP cache in front of proxied locations (RFC 9111), as written and as validated.
//!
//! The section is merged like `[limits]`: for each key the last file that sets it wins
//! (`purge_allow` is one value: the last file's list replaces earlier ones). The cache is off
//! unless a `[cache]` section exists; `enabled = false` turns it off while keeping the section.
//! A `[[vhost.location]]` opts in with `cache = true`, which needs the cache enabled.
//!
//! ```toml
//! [cache]
//! enabled = true              # default true once the section exists
//! memory_size = "64MiB"       # bytes of entries kept in memory (headers + bodies), > 0
//! disk_dir = "cache"          # optional: a directory for the disk tier (created if missing)
//! disk_size = "1GiB"          # bytes the disk tier may hold; needs disk_dir
//! max_object_size = "8MiB"    # larger responses are passed through, never stored
//! default_ttl = "0s"          # freshness of a response with no explicit lifetime and no
//!                             # Last-Modified; "0s" = store only to revalidate
//! heuristic_max_ttl = "1h"    # cap of the Last-Modified heuristic (10 % of its age); "0s" = off
//! purge_allow = ["127.0.0.1/32", "::1/128"]  # who may send PURGE (CIDR or a single address)
//! lock_timeout = "5s"         # collapsed forwarding: how long a miss waits for the request
//!                             # already in flight before going upstream itself
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::ConfError;
use crate::raw::{RawLocation, RawSize};
use crate::source::Source;
use crate::units::parse_duration;
use crate::validate::{At, last};

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: Option<Spanned<bool>>,
    pub memory_size: Option<Spanned<RawSize>>,
    pub disk_dir: Option<Spanned<String>>,
    pub disk_size: Option<Spanned<RawSize>>,
    pub max_object_size: Option<Spanned<RawSize>>,
    pub default_ttl: Option<Spanned<String>>,
    pub heuristic_max_ttl: Option<Spanned<String>>,
    pub purge_allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub lock_timeout: Option<Spanned<String>>,
}

/// The validated `[cache]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Whether the cache exists at all; locations with `cache = true` need it.
    pub enabled: bool,
    /// Bytes of entries (status, headers, body, bookkeeping) the memory tier holds.
    pub memory_size: u64,
    /// The disk tier, when configured: entries survive a restart.
    pub disk: Option<DiskTier>,
    /// Responses with bodies larger than this are forwarded, never stored.
    pub max_object_size: u64,
    /// Freshness lifetime of a storable response that states none and has no `Last-Modified`.
    pub default_ttl: Duration,
    /// Cap on heuristic freshness (RFC 9111 §4.2.2: 10 % of the time since `Last-Modified`);
    /// zero disables heuristic freshness.
    pub heuristic_max_ttl: Duration,
    /// Clients allowed to send `PURGE`.
    pub purge_allow: Vec<IpNet>,
    /// Collapsed forwarding: how long a miss waits for an identical request already in flight.
    pub lock_timeout: Duration,
}

/// The disk tier of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTier {
    /// Absolute path of the cache directory (created when the cache opens).
    pub dir: PathBuf,
    /// Bytes of entry files kept; the least recently used are removed past it.
    pub max_size: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            memory_size: 64 * 1024 * 1024,
            disk: None,
            max_object_size: 8 * 1024 * 1024,
            default_ttl: Duration::ZERO,
            heuristic_max_ttl: Duration::from_secs(3600),
            purge_allow: vec![
                IpNet::from(IpAddr::from([127, 0, 0, 1])),
                IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            lock_timeout: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    /// Whether `addr` may purge entries.
    pub fn may_purge(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.purge_allow.iter().any(|net| net.contains(&addr))
    }
}

/// Default disk tier size when `disk_dir` is set without `disk_size`.
const DEFAULT_DISK_SIZE: u64 = 1 << 30;

fn cache_key<'a, T>(
    sources: &'a [Source],
    get: impl Fn(&'a RawCache) -> Option<&'a Spanned<T>>,
) -> Option<At<'a, T>> {
    last(sources, |f| f.cache.as_ref().and_then(&get))
}

/// Merge and validate `[cache]`, and check that locations with `cache = true` have one.
/// `base` resolves a relative `disk_dir`.
pub(crate) fn cache(sources: &[Source], base: &Path) -> Result<CacheConfig, ConfError> {
    let d = CacheConfig::default();
    let present = sources.iter().any(|s| s.raw.cache.is_some());
    let enabled = cache_key(sources, |c| c.enabled.as_ref()).map_or(present, |at| *at.value());
    let memory_size = size(sources, "memory_size", |c| c.memory_size.as_ref())?;
    let max_object_size = size(sources, "max_object_size", |c| c.max_object_size.as_ref())?;
    let disk_size = size(sources, "disk_size", |c| c.disk_size.as_ref())?;
    let disk = match cache_key(sources, |c| c.disk_dir.as_ref()) {
        None => {
            if let Some(at) = cache_key(sources, |c| c.disk_size.as_ref()) {
                return Err(at.error(
                    "cache.disk_size",
                    "needs cache.disk_dir (the directory of the disk tier)",
                ));
            }
            None
        }
        Some(at) => {
            if at.value().is_empty() {
                return Err(at.error("cache.disk_dir", "must not be empty"));
            }
            let dir = base.join(at.value());
            if dir.exists() && !dir.is_dir() {
                return Err(at.error(
                    "cache.disk_dir",
                    format_args!("{} is not a directory", dir.display()),
                ));
            }
            Some(DiskTier {
                dir,
                max_size: disk_size.unwrap_or(DEFAULT_DISK_SIZE),
            })
        }
    };
    let purge_allow = match cache_key(sources, |c| c.purge_allow.as_ref()) {
        None => d.purge_allow,
        Some(at) => {
            let mut nets = Vec::new();
            for (i, item) in at.value().iter().enumerate() {
                let entry = At {
                    source: at.source,
                    item,
                };
                nets.push(
                    parse_net(entry.value())
                        .map_err(|e| entry.error(&format!("cache.purge_allow[{i}]"), e))?,
                );
            }
            nets
        }
    };
    check_location_switches(sources, enabled)?;
    Ok(CacheConfig {
        enabled,
        memory_size: memory_size.unwrap_or(d.memory_size),
        disk,
        max_object_size: max_object_size.unwrap_or(d.max_object_size),
        default_ttl: duration(sources, "default_ttl", |c| c.default_ttl.as_ref(), true)?
            .unwrap_or(d.default_ttl),
        heuristic_max_ttl: duration(
            sources,
            "heuristic_max_ttl",
            |c| c.heuristic_max_ttl.as_ref(),
            true,
        )?
        .unwrap_or(d.heuristic_max_ttl),
        purge_allow,
        lock_timeout: duration(sources, "lock_timeout", |c| c.lock_timeout.as_ref(), false)?
            .unwrap_or(d.lock_timeout),
    })
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{text:?} is not an address or a CIDR block (e.g. \"10.0.0.0/8\", \"::1\")")
    })
}

/// A `[cache]` size in bytes, greater than 0.
fn size<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawCache) -> Option<&'a Spanned<RawSize>>,
) -> Result<Option<u64>, ConfError> {
    let Some(at) = cache_key(sources, get) else {
        return Ok(None);
    };
    let key = format!("cache.{name}");
    let bytes = at.value().bytes().map_err(|e| at.error(&key, e))?;
    if bytes == 0 {
        return Err(at.error(&key, "must be greater than 0"));
    }
    Ok(Some(bytes))
}

/// A `[cache]` duration; zero only where `zero_ok`.
fn duration<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawCache) -> Option<&'a Spanned<String>>,
    zero_ok: bool,
) -> Result<Option<Duration>, ConfError> {
    let Some(at) = cache_key(sources, get) else {
        return Ok(None);
    };
    let key = format!("cache.{name}");
    let value = parse_duration(at.value()).map_err(|e| at.error(&key, e))?;
    if value.is_zero() && !zero_ok {
        return Err(at.error(&key, "must be greater than 0"));
    }
    Ok(Some(value))
}

/// A location's `cache` switch (`cache = true` opts in; default off).
pub(crate) fn location_switch(raw: &RawLocation) -> bool {
    raw.cache.as_ref().is_some_and(|c| *c.get_ref())
}

/// `cache = true` on a location needs the cache enabled; the error points at the switch.
fn check_location_switches(sources: &[Source], enabled: bool) -> Result<(), ConfError> {
    if enabled {
        return Ok(());
    }
    let vhosts = sources
        .iter()
        .flat_map(|source| source.raw.vhost.iter().flatten().map(move |v| (source, v)));
    for (i, (source, vhost)) in vhosts.enumerate() {
        for (j, location) in vhost.get_ref().location.iter().flatten().enumerate() {
            if let Some(switch) = &location.get_ref().cache
                && *switch.get_ref()
            {
                return Err(source.error(
                    switch.span(),
                    &format!("vhost[{i}].location[{j}].cache"),
                    "the cache is not enabled: add a [cache] section (or remove enabled = false)",
                ));
            }
        }
    }
    Ok(())
}
