//! Where stored responses live: a memory tier bounded in bytes (moka, weighed by entry size) in
//! front of an optional [`DiskStore`].
//!
//! The memory tier is keyed by the primary key ([`base_key`](super::policy::base_key)): one
//! value holds the `Vary` field names the origin announced and up to [`MAX_VARIANTS`] stored
//! responses, one per secondary key. A response whose `Vary` differs from the stored one
//! replaces all variants (the origin changed what it varies on). Memory operations never block;
//! the disk methods do ([`Store::disk_get`], [`Store::disk_put`], [`Store::remove`]) and belong
//! on a blocking thread.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use foldhash::fast::RandomState;
use http::header::{AGE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use moka::sync::Cache;
use switchyard_conf::CacheConfig;

use super::disk::{DiskStore, Record};
use super::policy::{CACHE_STATUS, CacheStatus, Freshness, Rules, secondary_key};
use crate::message::SharedFields;

/// Most variants (secondary keys) kept per URI.
pub const MAX_VARIANTS: usize = 16;

/// What an entry costs besides its body and header bytes.
const ENTRY_OVERHEAD: usize = 256;

/// One stored response, with what [`Freshness`] derived from it when it was stored.
#[derive(Debug, Clone)]
pub struct Entry {
    pub base: String,
    pub secondary: String,
    pub vary: Vec<HeaderName>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The fields every hit sends unchanged (`headers` less `Age`, `Cache-Status` and what
    /// the session writes itself), rendered once.
    pub shared: Arc<SharedFields>,
    /// The stored response's own `Cache-Status` (from caches closer to the origin).
    pub upstream_status: Option<HeaderValue>,
    pub body: Bytes,
    pub freshness: Freshness,
    /// `Age` and `Cache-Status` of a fresh hit, made again only when the age (in whole
    /// seconds, which also fixes the `ttl`) has changed: most hits allocate nothing for them.
    hit_fields: HitMemo,
}

/// See [`Entry::hit_fields`]. A clone of an entry starts with an empty memo.
#[derive(Debug, Default)]
struct HitMemo(Mutex<Option<HitFields>>);

impl Clone for HitMemo {
    fn clone(&self) -> HitMemo {
        HitMemo::default()
    }
}

#[derive(Debug, Clone)]
struct HitFields {
    age_secs: u64,
    age: HeaderValue,
    cache_status: Option<HeaderValue>,
}

impl Entry {
    /// Build an entry for a response received at `response_time` to a request sent at
    /// `request_time`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: String,
        secondary: String,
        vary: Vec<HeaderName>,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: &Rules,
    ) -> Entry {
        let freshness = Freshness::new(status, &headers, request_time, response_time, rules);
        let mut fields = headers.clone();
        fields.remove(AGE);
        let upstream_status = fields.remove(CACHE_STATUS);
        Entry {
            base,
            secondary,
            vary,
            status,
            headers,
            shared: Arc::new(SharedFields::new(fields)),
            upstream_status,
            body,
            freshness,
            hit_fields: HitMemo::default(),
        }
    }

    /// The `Age` and `Cache-Status` (RFC 9211 `hit` and `ttl`, after the stored response's
    /// own) of a fresh hit at `now`.
    pub fn hit_fields(&self, now: SystemTime) -> (HeaderValue, Option<HeaderValue>) {
        let age_secs = self.freshness.current_age(now);
        let mut memo = self.hit_fields.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fields) = memo.as_ref().filter(|f| f.age_secs == age_secs) {
            return (fields.age.clone(), fields.cache_status.clone());
        }
        let status = CacheStatus {
            hit: true,
            ttl: Some(self.freshness.ttl(now)),
            ..Default::default()
        };
        let fields = HitFields {
            age_secs,
            age: HeaderValue::from(age_secs),
            cache_status: status.value_after(self.upstream_status.as_ref()),
        };
        let answer = (fields.age.clone(), fields.cache_status.clone());
        *memo = Some(fields);
        answer
    }

    fn from_record(record: Record, rules: &Rules) -> Entry {
        Entry::new(
            record.base,
            record.secondary,
            record.vary,
            record.status,
            record.headers,
            record.body,
            record.request_time,
            record.response_time,
            rules,
        )
    }

    fn to_record(&self) -> Record {
        Record {
            base: self.base.clone(),
            secondary: self.secondary.clone(),
            vary: self.vary.clone(),
            status: self.status,
            headers: self.headers.clone(),
            request_time: self.freshness.request_time,
            response_time: self.freshness.response_time,
            body: self.body.clone(),
        }
    }

    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        // The shared set holds the fields again: as a map and as rendered lines.
        let shared = headers + self.shared.lines().len();
        self.body.len() + headers + shared + self.base.len() + self.secondary.len() + ENTRY_OVERHEAD
    }
}

/// The stored variants of one URI.
#[derive(Debug, Clone)]
struct Variants {
    vary: Vec<HeaderName>,
    entries: Vec<Arc<Entry>>,
}

impl Variants {
    fn weight(&self) -> u32 {
        let bytes: usize = self.entries.iter().map(|e| e.weight()).sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The result of looking a request up in memory.
#[derive(Debug, Clone)]
pub enum Lookup {
    Hit(Arc<Entry>),
    /// Something is stored for the URI, not for these `Vary` values.
    VaryMiss,
    UriMiss,
}

/// The memory tier and the optional disk tier. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    memory: Cache<String, Arc<Variants>, RandomState>,
    disk: Option<Arc<DiskStore>>,
    rules: Rules,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("uris", &self.memory.entry_count())
            .field("bytes", &self.memory.weighted_size())
            .field("disk", &self.disk)
            .finish()
    }
}

impl Store {
    /// Open the tiers `cfg` describes (the disk tier's directory is created and indexed).
    pub fn open(cfg: &CacheConfig) -> io::Result<Store> {
        let memory = Cache::builder()
            .max_capacity(cfg.memory_size)
            .weigher(|_: &String, v: &Arc<Variants>| v.weight())
            .build_with_hasher(RandomState::default());
        let disk = match &cfg.disk {
            Some(tier) => Some(Arc::new(DiskStore::open(&tier.dir, tier.max_size)?)),
            None => None,
        };
        Ok(Store {
            memory,
            disk,
            rules: Rules {
                default_ttl: cfg.default_ttl,
                heuristic_max_ttl: cfg.heuristic_max_ttl,
            },
        })
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// The disk tier, if configured.
    pub fn disk(&self) -> Option<&DiskStore> {
        self.disk.as_deref()
    }

    /// Look `req_headers` up in the memory tier.
    pub fn get(&self, base: &str, req_headers: &HeaderMap) -> Lookup {
        let Some(variants) = self.memory.get(base) else {
            return Lookup::UriMiss;
        };
        let secondary = secondary_key(&variants.vary, req_headers);
        match variants.entries.iter().find(|e| e.secondary == secondary) {
            Some(entry) => Lookup::Hit(entry.clone()),
            None => Lookup::VaryMiss,
        }
    }

    /// Whether the disk tier holds anything for `base` (does not block on the disk).
    pub fn disk_has(&self, base: &str) -> bool {
        self.disk.as_ref().is_some_and(|d| d.has(base))
    }

    /// Look in the disk tier and, when found, keep the entry in memory too. Blocks.
    pub fn disk_get(&self, base: &str, req_headers: &HeaderMap) -> Option<Arc<Entry>> {
        let record = self.disk.as_ref()?.get(base, req_headers)?;
        let entry = Arc::new(Entry::from_record(record, &self.rules));
        self.put_memory(entry.clone());
        Some(entry)
    }

    /// Keep `entry` in memory, replacing the variant with its secondary key.
    pub fn put_memory(&self, entry: Arc<Entry>) {
        self.memory
            .entry(entry.base.clone())
            .and_upsert_with(|old| {
                let mut variants = match old.map(|e| e.into_value()) {
                    Some(v) if v.vary == entry.vary => (*v).clone(),
                    _ => Variants {
                        vary: entry.vary.clone(),
                        entries: Vec::new(),
                    },
                };
                variants.entries.retain(|e| e.secondary != entry.secondary);
                if variants.entries.len() >= MAX_VARIANTS {
                    variants.entries.remove(0);
                }
                variants.entries.push(entry.clone());
                Arc::new(variants)
            });
    }

    /// Write `entry` to the disk tier, if any. Blocks.
    pub fn disk_put(&self, entry: &Entry) -> io::Result<()> {
        match &self.disk {
            Some(disk) => disk.put(&entry.to_record()),
            None => Ok(()),
        }
    }

    /// Forget every variant of `base` in both tiers; whether anything was stored. Blocks when
    /// there is a disk tier.
    pub fn remove(&self, base: &str) -> bool {
        let in_memory = self.memory.remove(base).is_some();
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove(base));
        in_memory || on_disk > 0
    }

    /// Settle moka's pending bookkeeping (evictions, sizes): for tests and metrics.
    pub fn sync(&self) {
        self.memory.run_pending_tasks();
    }

    /// Bytes the memory tier holds (after [`Store::sync`]).
    pub fn memory_bytes(&self) -> u64 {
        self.memory.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(base: &str, vary: &[&'static str], secondary: &str) -> Arc<Entry> {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Arc::new(Entry::new(
            base.to_owned(),
            secondary.to_owned(),
            vary.iter().map(|n| HeaderName::from_static(n)).collect(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"x"),
            t,
            t,
            &Rules::default(),
        ))
    }

    fn req(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn variants_follow_vary() {
        let store = Store::open(&CacheConfig::default()).unwrap();
        assert!(matches!(store.get("k", &HeaderMap::new()), Lookup::UriMiss));
        let gz = secondary_key(
            &[HeaderName::from_static("accept-encoding")],
            &req("accept-encoding", "gzip"),
        );
        let br = secondary_key(
            &[HeaderName::from_static("accept-encoding")],
            &req("accept-encoding", "br"),
        );
        store.put_memory(entry("k", &["accept-encoding"], &gz));
        store.put_memory(entry("k", &["accept-encoding"], &br));
        assert!(matches!(
            store.get("k", &req("accept-encoding", "gzip")),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            store.get("k", &req("accept-encoding", "br")),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            store.get("k", &req("accept-encoding", "zstd")),
            Lookup::VaryMiss
        ));
        // The origin now varies on something else: the old variants go.
        let fr = secondary_key(
            &[HeaderName::from_static("accept-language")],
            &req("accept-language", "fr"),
        );
        store.put_memory(entry("k", &["accept-language"], &fr));
        assert!(matches!(
            store.get("k", &req("accept-encoding", "gzip")),
            Lookup::VaryMiss
        ));
        assert!(matches!(
            store.get("k", &req("accept-language", "fr")),
            Lookup::Hit(_)
        ));
        assert!(store.remove("k"));
        assert!(!store.remove("k"));
    }

    #[test]
    fn hit_fields_follow_the_age_and_are_made_once_a_second() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        headers.insert(AGE, HeaderValue::from_static("5"));
        headers.insert(CACHE_STATUS, HeaderValue::from_static("origin-cache; hit"));
        let entry = Entry::new(
            "k".to_owned(),
            String::new(),
            Vec::new(),
            StatusCode::OK,
            headers,
            Bytes::from_static(b"x"),
            t,
            t,
            &Rules::default(),
        );
        let (age, status) = entry.hit_fields(t + Duration::from_millis(300));
        assert_eq!(age, "5");
        let status = status.expect("a Cache-Status");
        assert_eq!(status, "origin-cache; hit, switchyard; hit; ttl=55");
        // Later in the same second: the same values, not made again.
        let (again, status_again) = entry.hit_fields(t + Duration::from_millis(900));
        assert_eq!(again, "5");
        assert_eq!(
            status_again.expect("a Cache-Status").as_bytes().as_ptr(),
            status.as_bytes().as_ptr()
        );
        // Ten seconds on.
        let (age, status) = entry.hit_fields(t + Duration::from_secs(10));
        assert_eq!(age, "15");
        assert_eq!(
            status.expect("a Cache-Status"),
            "origin-cache; hit, switchyard; hit; ttl=45"
        );
    }

    #[test]
    fn variants_per_uri_are_bounded() {
        let store = Store::open(&CacheConfig::default()).unwrap();
        for i in 0..(MAX_VARIANTS + 5) {
            store.put_memory(entry("k", &["x-v"], &format!("x-v:{i}\n")));
        }
        let mut h = HeaderMap::new();
        let hits = (0..(MAX_VARIANTS + 5))
            .filter(|i| {
                h.insert("x-v", HeaderValue::from_str(&i.to_string()).unwrap());
                matches!(store.get("k", &h), Lookup::Hit(_))
            })
            .count();
        assert_eq!(hits, MAX_VARIANTS);
        // The oldest went first.
        h.insert("x-v", HeaderValue::from_static("0"));
        assert!(matches!(store.get("k", &h), Lookup::VaryMiss));
    }
}
