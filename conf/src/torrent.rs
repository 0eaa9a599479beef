//! `[torrent]`: seeding every served file over BitTorrent, the built-in tracker, peer limits.
//!
//! ```toml
//! [torrent]
//! enabled = true                # seed served files, answer /announce and /scrape; default true
//! state_dir = "/var/lib/switchyard"  # piece-hash cache; default $XDG_STATE_HOME/switchyard
//!                               # (else ~/.local/state/switchyard); never inside a served root
//! piece_length = "1MiB"         # power of two, 16KiB..=16MiB; default: by file size (256KiB..4MiB)
//! public_url = "https://files.example.com"  # base of announce/web-seed URLs; default: the
//!                               # scheme and Host of the request for the .torrent
//! max_unchoked = 16             # peers served at once (process-wide); others wait their turn
//! max_peers = 1000              # peer-wire connections (process-wide)
//! upload_rate = "50MiB"         # bytes per second over the peer wire (process-wide); default unlimited
//! announce_interval = "120s"    # the tracker's `interval`; peers silent for 2 intervals expire
//! peers_per_answer = 50         # most peers in one announce answer (besides this server)
//! request_queue = 2000          # outstanding block requests one peer may have (libtorrent's default)
//! hash_threads = 2              # files hashed in parallel; default min(2, cores)
//! hash_at_start = true          # hash every served file at start (logs progress); default true
//! ```
//!
//! Per location (`[[vhost.location]]`): `seed = false` turns seeding of that location off,
//! `piece_length = "..."` overrides the piece length for its files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::ConfError;
use crate::raw::{RawFile, RawSize};
use crate::source::Source;
use crate::units::parse_duration;

/// Smallest and largest piece lengths we produce or accept (BEP 3 says nothing; clients agree
/// on powers of two from one block, 16 KiB, up to 16 MiB).
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
pub const MAX_PIECE_LENGTH: u32 = 16 * 1024 * 1024;

/// BitTorrent seeding and the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentConfig {
    pub enabled: bool,
    /// Where piece hashes are cached between runs (created on demand).
    pub state_dir: PathBuf,
    /// Overrides the size heuristic for every location that sets none.
    pub piece_length: Option<u32>,
    /// Base URL (`scheme://host[:port]`, no trailing slash) for announce and web-seed URLs.
    pub public_url: Option<String>,
    pub max_unchoked: usize,
    pub max_peers: usize,
    /// Bytes per second over the peer wire, all peers together; `None`: unlimited.
    pub upload_rate: Option<u64>,
    pub announce_interval: Duration,
    pub peers_per_answer: usize,
    pub request_queue: usize,
    pub hash_threads: usize,
    pub hash_at_start: bool,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            enabled: true,
            state_dir: default_state_dir(),
            piece_length: None,
            public_url: None,
            max_unchoked: 16,
            max_peers: 1000,
            upload_rate: None,
            announce_interval: Duration::from_secs(120),
            peers_per_answer: 50,
            request_queue: 2000,
            hash_threads: crate::default_workers().clamp(1, 2),
            hash_at_start: true,
        }
    }
}

/// `$XDG_STATE_HOME/switchyard`, else `~/.local/state/switchyard`, else a directory under the
/// system's temporary directory. Never the served tree.
pub fn default_state_dir() -> PathBuf {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        return PathBuf::from(state).join("switchyard");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".local/state/switchyard");
    }
    std::env::temp_dir().join("switchyard-state")
}

/// `[torrent]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTorrent {
    pub enabled: Option<bool>,
    pub state_dir: Option<Spanned<String>>,
    pub piece_length: Option<Spanned<RawSize>>,
    pub public_url: Option<Spanned<String>>,
    pub max_unchoked: Option<Spanned<i64>>,
    pub max_peers: Option<Spanned<i64>>,
    pub upload_rate: Option<Spanned<RawSize>>,
    pub announce_interval: Option<Spanned<String>>,
    pub peers_per_answer: Option<Spanned<i64>>,
    pub request_queue: Option<Spanned<i64>>,
    pub hash_threads: Option<Spanned<i64>>,
    pub hash_at_start: Option<bool>,
}

/// The last file that sets a `[torrent]` key wins.
fn last<'a, T>(
    sources: &'a [Source],
    get: impl Fn(&'a RawTorrent) -> Option<&'a T>,
) -> Option<(&'a Source, &'a T)> {
    sources.iter().rev().find_map(|source| {
        let raw: &'a RawFile = &source.raw;
        raw.torrent.as_ref().and_then(&get).map(|v| (source, v))
    })
}

pub(crate) fn torrent(sources: &[Source], base: &Path) -> Result<TorrentConfig, ConfError> {
    let d = TorrentConfig::default();
    let count = |name: &str,
                 get: &dyn Fn(&RawTorrent) -> Option<&Spanned<i64>>,
                 default: usize,
                 max: usize|
     -> Result<usize, ConfError> {
        let Some((source, item)) = last(sources, get) else {
            return Ok(default);
        };
        let key = format!("torrent.{name}");
        match usize::try_from(*item.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(source.error(item.span(), &key, format_args!("must be 1..={max}"))),
        }
    };
    let state_dir = match last(sources, |t| t.state_dir.as_ref()) {
        None => d.state_dir,
        Some((source, item)) if item.get_ref().is_empty() => {
            return Err(source.error(item.span(), "torrent.state_dir", "must not be empty"));
        }
        Some((_, item)) => base.join(item.get_ref()),
    };
    let piece_length = match last(sources, |t| t.piece_length.as_ref()) {
        None => None,
        Some((source, item)) => Some(piece_length(source, item, "torrent.piece_length")?),
    };
    let public_url = match last(sources, |t| t.public_url.as_ref()) {
        None => None,
        Some((source, item)) => {
            let url = item.get_ref().trim_end_matches('/');
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => {
                    Some(url.to_owned())
                }
                _ => {
                    return Err(source.error(
                        item.span(),
                        "torrent.public_url",
                        "must be an http:// or https:// URL such as \"https://files.example.com\"",
                    ));
                }
            }
        }
    };
    let upload_rate = match last(sources, |t| t.upload_rate.as_ref()) {
        None => None,
        Some((source, item)) => Some(size(source, item, "torrent.upload_rate")?),
    };
    let announce_interval = match last(sources, |t| t.announce_interval.as_ref()) {
        None => d.announce_interval,
        Some((source, item)) => {
            let key = "torrent.announce_interval";
            let interval =
                parse_duration(item.get_ref()).map_err(|e| source.error(item.span(), key, e))?;
            if interval < Duration::from_secs(1) || interval > Duration::from_secs(24 * 3600) {
                return Err(source.error(item.span(), key, "must be 1s..=24h"));
            }
            interval
        }
    };
    Ok(TorrentConfig {
        enabled: last(sources, |t| t.enabled.as_ref()).is_none_or(|(_, v)| *v),
        state_dir,
        piece_length,
        public_url,
        max_unchoked: count(
            "max_unchoked",
            &|t| t.max_unchoked.as_ref(),
            d.max_unchoked,
            100_000,
        )?,
        max_peers: count("max_peers", &|t| t.max_peers.as_ref(), d.max_peers, 1 << 20)?,
        upload_rate,
        announce_interval,
        peers_per_answer: count(
            "peers_per_answer",
            &|t| t.peers_per_answer.as_ref(),
            d.peers_per_answer,
            1000,
        )?,
        request_queue: count(
            "request_queue",
            &|t| t.request_queue.as_ref(),
            d.request_queue,
            10_000,
        )?,
        hash_threads: count(
            "hash_threads",
            &|t| t.hash_threads.as_ref(),
            d.hash_threads,
            256,
        )?,
        hash_at_start: last(sources, |t| t.hash_at_start.as_ref()).is_none_or(|(_, v)| *v),
    })
}

fn size(source: &Source, item: &Spanned<RawSize>, key: &str) -> Result<u64, ConfError> {
    let bytes = item
        .get_ref()
        .bytes()
        .map_err(|e| source.error(item.span(), key, e))?;
    if bytes == 0 {
        return Err(source.error(item.span(), key, "must be greater than 0"));
    }
    Ok(bytes)
}

/// A piece length: a power of two within [`MIN_PIECE_LENGTH`]..=[`MAX_PIECE_LENGTH`].
pub(crate) fn piece_length(
    source: &Source,
    item: &Spanned<RawSize>,
    key: &str,
) -> Result<u32, ConfError> {
    let bytes = size(source, item, key)?;
    match u32::try_from(bytes) {
        Ok(n) if n.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&n) => Ok(n),
        _ => Err(source.error(
            item.span(),
            key,
            "must be a power of two from 16KiB to 16MiB",
        )),
    }
}
