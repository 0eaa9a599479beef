//! Where stored responses live: a memory tier bounded in bytes (`quick_cache`, weighed by entry
//! size) in front of an optional [`DiskStore`].
//!
//! The memory tier is read on every hit, so it is a cache whose lookup is a hash, a shard's
//! read lock and a probe; moka, tried first, also logs each read for its eviction policy and
//! reads the clock, which cost a cache hit about 3 % more CPU than serving a small static file.
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
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use switchyard_conf::CacheConfig;
use switchyard_wire::response::put_field;

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
    /// A fresh hit's fields (`shared`, then `Age` and `Cache-Status`), made again only when
    /// the age (in whole seconds, which also fixes the `ttl`) has changed: most hits build
    /// nothing and hash no field.
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
    fields: Arc<SharedFields>,
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

    /// A fresh hit's fields at `now`: the stored ones, then `Age` and `Cache-Status` (RFC 9211
    /// `hit` and `ttl`, after the stored response's own), as one set an HTTP/1.1 session
    /// writes as it is (HTTP/2 and HTTP/3 parse it once, on first use).
    pub fn hit_fields(&self, now: SystemTime) -> Arc<SharedFields> {
        let age_secs = self.freshness.current_age(now);
        let mut memo = self.hit_fields.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = memo.as_ref().filter(|hit| hit.age_secs == age_secs) {
            return hit.fields.clone();
        }
        let status = CacheStatus {
            hit: true,
            ttl: Some(self.freshness.ttl(now)),
            ..Default::default()
        };
        let cache_status = status.value_after(self.upstream_status.as_ref());
        let fields = self.fields_with(age_secs, cache_status.as_ref());
        *memo = Some(HitFields {
            age_secs,
            fields: fields.clone(),
        });
        fields
    }

    /// The stored fields, then `Age: age_secs` and `Cache-Status` (when there is one), as one
    /// set: what every answer made from this entry sends besides the session's own fields.
    pub fn fields_with(
        &self,
        age_secs: u64,
        cache_status: Option<&HeaderValue>,
    ) -> Arc<SharedFields> {
        let stored = self.shared.lines();
        let mut lines = Vec::with_capacity(stored.len() + 64);
        lines.extend_from_slice(stored);
        // RFC 9111 §5.1: "a cache SHOULD generate an Age header field" with the current age.
        put_field(
            &mut lines,
            b"age",
            itoa::Buffer::new().format(age_secs).as_bytes(),
        );
        if let Some(value) = cache_status {
            put_field(
                &mut lines,
                CACHE_STATUS.as_str().as_bytes(),
                value.as_bytes(),
            );
        }
        Arc::new(SharedFields::from_lines(lines))
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
        // The shared set holds the fields again: as a map and as rendered lines; a hit's memo
        // once more (lines, and a map after an HTTP/2 or HTTP/3 hit).
        let shared = headers + self.shared.lines().len();
        let memo = shared + 64;
        self.body.len()
            + headers
            + shared
            + memo
            + self.base.len()
            + self.secondary.len()
            + ENTRY_OVERHEAD
    }
}

/// The stored variants of one URI.
#[derive(Debug, Clone)]
struct Variants {
    vary: Vec<HeaderName>,
    entries: Vec<Arc<Entry>>,
}

impl Variants {
    fn weight(&self) -> u64 {
        self.entries.iter().map(|e| e.weight() as u64).sum()
    }
}

/// Weighs the memory tier's values by [`Variants::weight`].
#[derive(Debug, Clone, Copy)]
struct ByWeight;

impl Weighter<String, Arc<Variants>> for ByWeight {
    fn weight(&self, _: &String, variants: &Arc<Variants>) -> u64 {
        variants.weight()
    }
}

/// Each shard of the memory tier holds at least this many of the largest storable responses
/// (a value heavier than about a shard's capacity is not kept at all).
const LARGEST_PER_SHARD: u64 = 4;

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
    memory: Arc<Cache<String, Arc<Variants>, ByWeight, RandomState>>,
    /// Serialises [`Store::put_memory`]'s read-modify-write of a URI's variants (stores are
    /// rare next to lookups, which never take it).
    put: Arc<Mutex<()>>,
    disk: Option<Arc<DiskStore>>,
    rules: Rules,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("uris", &self.memory.len())
            .field("bytes", &self.memory.weight())
            .field("disk", &self.disk)
            .finish()
    }
}

impl Store {
    /// Open the tiers `cfg` describes (the disk tier's directory is created and indexed).
    pub fn open(cfg: &CacheConfig) -> io::Result<Store> {
        let largest = cfg.max_object_size.max(1);
        let shards = (cfg.memory_size / largest / LARGEST_PER_SHARD).clamp(1, 64) as usize;
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity((cfg.memory_size / 16_384).clamp(64, 1 << 20) as usize)
            .weight_capacity(cfg.memory_size)
            .shards(shards)
            .build()
            .map_err(io::Error::other)?;
        let memory = Cache::with_options(
            options,
            ByWeight,
            RandomState::default(),
            Default::default(),
        );
        let disk = match &cfg.disk {
            Some(tier) => Some(Arc::new(DiskStore::open(&tier.dir, tier.max_size)?)),
            None => None,
        };
        Ok(Store {
            memory: Arc::new(memory),
            put: Arc::default(),
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
        let _one_at_a_time = self.put.lock().unwrap_or_else(|e| e.into_inner());
        let mut variants = match self.memory.get(&entry.base) {
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
        self.memory.insert(entry.base.clone(), Arc::new(variants));
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
        let in_memory = {
            let _one_at_a_time = self.put.lock().unwrap_or_else(|e| e.into_inner());
            self.memory.remove(base).is_some()
        };
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove(base));
        in_memory || on_disk > 0
    }

    /// Bytes the memory tier holds.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.weight()
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
        let fields = entry.hit_fields(t + Duration::from_millis(300));
        let lines = std::str::from_utf8(fields.lines()).unwrap();
        assert_eq!(
            lines,
            "cache-control: max-age=60\r\nage: 5\r\n\
             cache-status: origin-cache; hit, switchyard; hit; ttl=55\r\n"
        );
        assert_eq!(fields.map()[AGE], "5");
        // Later in the same second: the same set, not made again.
        let again = entry.hit_fields(t + Duration::from_millis(900));
        assert!(Arc::ptr_eq(&fields, &again));
        // Ten seconds on.
        let later = entry.hit_fields(t + Duration::from_secs(10));
        assert!(!Arc::ptr_eq(&fields, &later));
        assert_eq!(later.map()[AGE], "15");
        assert_eq!(
            later.map()[CACHE_STATUS],
            "origin-cache; hit, switchyard; hit; ttl=45"
        );
    }

    #[test]
    fn the_largest_storable_response_is_kept_in_memory_and_the_bound_holds() {
        // The memory tier's shards are sized so that a response of `max_object_size` fits
        // one; the total stays within `memory_size` however many are stored.
        let cfg = CacheConfig::default();
        let store = Store::open(&cfg).unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let big = |base: &str| {
            Arc::new(Entry::new(
                base.to_owned(),
                String::new(),
                Vec::new(),
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::from(vec![b'x'; cfg.max_object_size as usize]),
                t,
                t,
                &Rules::default(),
            ))
        };
        store.put_memory(big("b0"));
        assert!(matches!(store.get("b0", &HeaderMap::new()), Lookup::Hit(_)));
        for i in 1..40 {
            store.put_memory(big(&format!("b{i}")));
            assert!(store.memory_bytes() <= cfg.memory_size);
        }
        assert!(matches!(
            store.get("b39", &HeaderMap::new()),
            Lookup::Hit(_)
        ));
        assert!(store.remove("b39"));
        assert!(matches!(
            store.get("b39", &HeaderMap::new()),
            Lookup::UriMiss
        ));
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
