//! The files service's memory: resolved routes and small files' bytes, one per worker.
//!
//! Serving a small static file at h2o's pace leaves room for about one `stat` per request, so
//! the cache keeps two things (both `quick_cache::sync` caches, weighed, cheap to clone; each
//! worker has its own, so the concurrent cache's locks are never contended, and a lookup costs a
//! hash and a probe, with no read log to replay as moka keeps):
//!
//! * **Routes**, keyed by a hash of the location's configuration and the *raw* request path:
//!   the resolved file (and its existing precompressed siblings) with ready-made `Content-Type`,
//!   `ETag` and `Last-Modified` values and the [`FileId`] they were computed from. A route is
//!   inserted only after the full walk proved the path decodes cleanly, passes the dotfile
//!   policy and resolves, links included, inside the root — so an entry can only ever name a
//!   file that was inside the root. A hit is re-validated with one `stat` of that file: if the
//!   inode, size, mtime or ctime differ, the route is dropped and the walk runs again. The
//!   entry stores the raw path and configuration fingerprint and both are compared on a hit,
//!   so a hash collision is a miss, never a wrong file. A route older than [`ROUTE_TTL`] is a
//!   miss too (the walk's new route replaces it), which bounds how long a *new* file that
//!   would change the answer (an index file or a precompressed sibling appearing) can go
//!   unnoticed.
//! * **Contents** of files up to `limits.small_file_max`, keyed by [`FileId`] (device, inode,
//!   size, mtime, ctime) and weighed in bytes: what identifies the bytes, not the name, so a
//!   changed file is simply a different key and is read again; the stale version ages out.
//!
//! A hit therefore costs two hashes of short strings, two cache lookups, one `statx` and
//! cloning a few `HeaderValue`s. Large files are opened per request (and checked with `fstat`
//! against the route's inode) and never read into memory.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use foldhash::fast::RandomState;
use http::header::{ACCEPT_RANGES, CONTENT_ENCODING, ETAG, LAST_MODIFIED, VARY};
use http::{HeaderMap, HeaderValue};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use switchyard_conf::FilesConfig;

use super::encoding::Encoding;
use super::representation::FileId;
use crate::message::SharedFields;

/// How long a resolved route is trusted before the path is walked again.
pub const ROUTE_TTL: Duration = Duration::from_secs(2);

/// Bytes of route entries kept (paths and header values; a route weighs a few hundred bytes).
const ROUTE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// What a route costs besides its strings (header values, vector, `Arc`, the cache's own entry).
const ROUTE_OVERHEAD: usize = 1024;

/// What a content entry costs besides its bytes, so a million empty files still add up.
const CONTENT_OVERHEAD: usize = 128;

/// The size of a typical small file, for sizing the content table up front.
const TYPICAL_CONTENT: u64 = 8 * 1024;

/// A route and when it was made ([`FileCache::now_ms`]).
type RouteEntry = (Arc<Route>, u64);

/// Weighs routes by their strings and content by its bytes.
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<u64, RouteEntry> for ByBytes {
    fn weight(&self, _: &u64, (route, _): &RouteEntry) -> u64 {
        route.weight()
    }
}

impl Weighter<FileId, Bytes> for ByBytes {
    fn weight(&self, _: &FileId, bytes: &Bytes) -> u64 {
        (bytes.len() + CONTENT_OVERHEAD) as u64
    }
}

/// A worker's small-file cache, shared by its sessions (readers) and its files service (cheap
/// `Clone`; `quick_cache::sync::Cache` inside, weighed by bytes).
#[derive(Clone)]
pub struct FileCache {
    routes: Arc<Cache<u64, RouteEntry, ByBytes, RandomState>>,
    contents: Arc<Cache<FileId, Bytes, ByBytes, RandomState>>,
    /// Keys hash request paths, which clients choose: a fast hasher, but seeded per cache.
    hasher: RandomState,
    /// How long a route's `stat` result is trusted ([`Timeouts::file_revalidate`]).
    ///
    /// [`Timeouts::file_revalidate`]: switchyard_conf::Timeouts::file_revalidate
    revalidate: Duration,
    /// Origin of the millisecond clock stored in [`Variant::checked`].
    epoch_ms: u64,
}

/// The coarse monotonic clock in milliseconds. It advances once per kernel tick (a few
/// milliseconds), far finer than the revalidation and route lifetimes it measures, and the vDSO
/// reads it without the time-stamp counter, which matters on a path taken by every hit.
fn coarse_monotonic_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1000)
        .saturating_add(u64::try_from(now.tv_nsec / 1_000_000).unwrap_or(0))
}

impl fmt::Debug for FileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCache")
            .field("routes", &self.routes.len())
            .field("contents", &self.contents.len())
            .field("content_bytes", &self.contents.weight())
            .finish()
    }
}

/// A files location as the service uses it: its configuration, and a fingerprint of
/// everything in it that changes how a path resolves, so locations (and reloads) sharing one
/// cache never share routes. Made once, when the route table is built, not per request.
#[derive(Debug)]
pub struct FilesLocation {
    cfg: FilesConfig,
    fingerprint: u64,
}

impl FilesLocation {
    pub fn new(cfg: FilesConfig) -> Self {
        let mut h = std::hash::DefaultHasher::new();
        cfg.root.as_os_str().hash(&mut h);
        cfg.index.hash(&mut h);
        (cfg.symlinks as u8).hash(&mut h);
        (cfg.dotfiles as u8).hash(&mut h);
        cfg.precompressed.hash(&mut h);
        FilesLocation {
            fingerprint: h.finish(),
            cfg,
        }
    }

    /// Keys this location's routes in a [`FileCache`] (see [`FileCache::route_key`]).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

impl std::ops::Deref for FilesLocation {
    type Target = FilesConfig;

    fn deref(&self) -> &FilesConfig {
        &self.cfg
    }
}

impl FileCache {
    /// A cache holding at most `max_bytes` of file contents (plus a bounded route table) that
    /// `stat`s a file on every request.
    pub fn new(max_bytes: u64) -> Self {
        Self::with_revalidate(max_bytes, Duration::ZERO)
    }

    /// Like [`FileCache::new`], but a file checked less than `revalidate` ago is not `stat`ed
    /// again: under load that saves a path walk per request, and an edit shows within
    /// `revalidate`. A route is still only ever built from a full walk inside the root.
    pub fn with_revalidate(max_bytes: u64, revalidate: Duration) -> Self {
        let routes = Cache::with(
            (ROUTE_CACHE_BYTES / (2 * ROUTE_OVERHEAD as u64)) as usize,
            ROUTE_CACHE_BYTES,
            ByBytes,
            RandomState::default(),
            Default::default(),
        );
        let contents = Cache::with(
            (max_bytes / TYPICAL_CONTENT).clamp(16, 64 * 1024) as usize,
            max_bytes,
            ByBytes,
            RandomState::default(),
            Default::default(),
        );
        FileCache {
            routes: Arc::new(routes),
            contents: Arc::new(contents),
            hasher: RandomState::default(),
            revalidate,
            epoch_ms: coarse_monotonic_ms(),
        }
    }

    /// Forget everything (configuration reload, tests).
    pub fn clear(&self) {
        self.routes.clear();
        self.contents.clear();
    }

    pub(super) fn route_key(&self, fingerprint: u64, raw_path: &str) -> u64 {
        self.hasher.hash_one((fingerprint, raw_path))
    }

    /// The route for `key`, if it was stored for exactly this path and configuration less
    /// than [`ROUTE_TTL`] ago.
    pub(super) fn route(&self, key: u64, fingerprint: u64, raw_path: &str) -> Option<Arc<Route>> {
        let (route, born_ms) = self.routes.get(&key)?;
        let young = self.now_ms().saturating_sub(born_ms) < ROUTE_TTL.as_millis() as u64;
        (young && route.fingerprint == fingerprint && &*route.raw_path == raw_path).then_some(route)
    }

    pub(super) fn insert_route(&self, key: u64, route: Arc<Route>) {
        self.routes.insert(key, (route, self.now_ms()));
    }

    pub(super) fn forget_route(&self, key: u64) {
        self.routes.remove(&key);
    }

    /// Milliseconds since this cache was made (the clock of [`Variant::checked`]).
    pub(super) fn now_ms(&self) -> u64 {
        coarse_monotonic_ms().saturating_sub(self.epoch_ms)
    }

    /// Whether `variant` was confirmed recently enough to skip its `stat`.
    pub(super) fn still_fresh(&self, variant: &Variant, now_ms: u64) -> bool {
        let checked = variant.checked.load(Ordering::Relaxed);
        checked != NEVER_CHECKED
            && now_ms.saturating_sub(checked)
                < u64::try_from(self.revalidate.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn content(&self, id: &FileId) -> Option<Bytes> {
        self.contents.get(id)
    }

    pub(super) fn insert_content(&self, id: FileId, bytes: Bytes) {
        self.contents.insert(id, bytes);
    }
}

/// A request path resolved to a file, with everything a response about it needs.
#[derive(Debug)]
pub struct Route {
    /// The raw request path this was resolved from (compared on lookup).
    pub raw_path: Box<str>,
    /// [`FilesLocation::fingerprint`] of the location it was resolved under.
    pub fingerprint: u64,
    /// The identity file first, then existing precompressed siblings in [`Encoding::ALL`] order.
    pub variants: Vec<Variant>,
    /// The encodings of `variants[1..]`, for negotiation.
    pub encodings: Vec<Encoding>,
}

impl Route {
    fn weight(&self) -> u64 {
        let strings: usize = self
            .variants
            .iter()
            .map(|v| v.path.as_os_str().len() + v.etag.len())
            .sum();
        (self.raw_path.len() + strings + ROUTE_OVERHEAD * self.variants.len()) as u64
    }

    /// The variant to send for a negotiated encoding (`None` = identity).
    pub fn variant(&self, encoding: Option<Encoding>) -> &Variant {
        self.variants
            .iter()
            .find(|v| v.encoding == encoding)
            .unwrap_or(&self.variants[0])
    }
}

/// One representation of a route: the file itself or a precompressed sibling.
#[derive(Debug)]
pub struct Variant {
    /// Where to `stat` and open it (inside the root, as proven when the route was built).
    pub path: PathBuf,
    pub encoding: Option<Encoding>,
    /// The version the header values below describe.
    pub id: FileId,
    pub content_type: HeaderValue,
    pub etag: HeaderValue,
    /// `etag` as text, for comparisons.
    pub etag_text: Box<str>,
    pub last_modified: HeaderValue,
    /// The time `last_modified` states (whole seconds, never in the future).
    pub modified: SystemTime,
    /// When `id` was last confirmed by a `stat` ([`FileCache::now_ms`]), or [`NEVER_CHECKED`].
    pub checked: AtomicU64,
    /// Whether the route has precompressed siblings, so its answers depend on Accept-Encoding.
    pub varies: bool,
    /// The fields of a 200 answer with this variant: [`Variant::range_headers`] and
    /// Content-Type, made once with the route.
    pub ok_fields: Arc<SharedFields>,
}

impl Variant {
    /// ETag, Last-Modified and, when the route has a precompressed sibling to choose, `Vary:
    /// Accept-Encoding` (RFC 9110 §12.5.5; §15.4.5 asks for it on a 304 too): what a 304 or 412
    /// about this variant carries.
    pub fn validator_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(ETAG, self.etag.clone());
        headers.insert(LAST_MODIFIED, self.last_modified.clone());
        if self.varies {
            // Field names are case-insensitive; in lowercase this is QPACK's static entry 59,
            // which HTTP/3 sends as one byte instead of a Huffman-coded string.
            headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        }
        headers
    }

    /// [`Variant::validator_headers`], Accept-Ranges and the Content-Encoding of a
    /// precompressed sibling: the fields every answer with content shares.
    pub fn range_headers(&self) -> HeaderMap {
        let mut headers = self.validator_headers();
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(encoding) = self.encoding {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
        }
        headers
    }
}

/// [`Variant::checked`] of a variant that must be `stat`ed before its next use.
pub const NEVER_CHECKED: u64 = u64::MAX;
