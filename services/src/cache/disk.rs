//! The disk tier: one file per stored response in the cache directory, so entries survive a
//! restart.
//!
//! A file is named by the SHA-256 of its primary and secondary key and written atomically: the
//! bytes go to a hidden temporary file in the same directory, which is then renamed over the
//! name. A reader therefore sees the old file or the new one, never half of one. Nothing is
//! `fsync`ed: after a crash a file may be short or empty, which [`decode_head`] detects (the
//! lengths in the file must add up), and such files are deleted when the directory is scanned.
//!
//! The index (which files exist, their keys and sizes, and a use counter) lives in memory and is
//! rebuilt at start by reading the head of every file. Past `max_size` the least recently used
//! files are deleted until the tier is at 90 % of it. All methods block on the filesystem: call
//! them from a blocking thread (`tokio::task::spawn_blocking`).
//!
//! # File format (all integers big-endian)
//!
//! ```text
//! "SYCACHE1"  u32 head_len  head  body
//! head = u16 status  u64 request_time  u64 response_time      (seconds since the epoch)
//!        str base  str secondary  u16 n  str vary-name * n
//!        u16 m  (str name, str value) * m  u64 body_len
//! str  = u32 len, bytes
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use super::policy::{secondary_key, secs};

const MAGIC: &[u8; 8] = b"SYCACHE1";
/// A head larger than this is not one we wrote.
const MAX_HEAD: u32 = 1 << 20;
const TEMP_PREFIX: &str = ".tmp-";

/// A stored response as the disk keeps it: no derived values, those are recomputed on load.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub base: String,
    pub secondary: String,
    pub vary: Vec<HeaderName>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    pub body: Bytes,
}

/// The head of a record: everything but the body, plus the body's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub record: Record,
    pub body_len: u64,
    /// Bytes before the body (magic, length and head).
    pub head_len: u64,
}

/// Serialise `record` (see the module docs for the layout).
pub fn encode(record: &Record) -> Vec<u8> {
    let mut head = Vec::new();
    head.extend_from_slice(&record.status.as_u16().to_be_bytes());
    head.extend_from_slice(&secs(record.request_time).to_be_bytes());
    head.extend_from_slice(&secs(record.response_time).to_be_bytes());
    put_str(&mut head, record.base.as_bytes());
    put_str(&mut head, record.secondary.as_bytes());
    head.extend_from_slice(&(record.vary.len() as u16).to_be_bytes());
    for name in &record.vary {
        put_str(&mut head, name.as_str().as_bytes());
    }
    head.extend_from_slice(&(record.headers.len() as u16).to_be_bytes());
    for (name, value) in &record.headers {
        put_str(&mut head, name.as_str().as_bytes());
        put_str(&mut head, value.as_bytes());
    }
    head.extend_from_slice(&(record.body.len() as u64).to_be_bytes());
    let mut out = Vec::with_capacity(12 + head.len() + record.body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&record.body);
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Decode the head at the start of `bytes` (which may stop anywhere after the head). `None`
/// for anything we did not write: wrong magic, truncated, invalid names or values.
pub fn decode_head(bytes: &[u8]) -> Option<Head> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let head_len = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
    if head_len > MAX_HEAD {
        return None;
    }
    let end = 12 + head_len as usize;
    let mut r = Reader {
        bytes: bytes.get(..end)?,
        pos: 12,
    };
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let request_time = UNIX_EPOCH + Duration::from_secs(r.u64()?);
    let response_time = UNIX_EPOCH + Duration::from_secs(r.u64()?);
    let base = String::from_utf8(r.str()?.to_vec()).ok()?;
    let secondary = String::from_utf8(r.str()?.to_vec()).ok()?;
    let mut vary = Vec::new();
    for _ in 0..r.u16()? {
        vary.push(HeaderName::from_bytes(r.str()?).ok()?);
    }
    let mut headers = HeaderMap::new();
    for _ in 0..r.u16()? {
        let name = HeaderName::from_bytes(r.str()?).ok()?;
        let value = HeaderValue::from_bytes(r.str()?).ok()?;
        headers.append(name, value);
    }
    let body_len = r.u64()?;
    if r.pos != end {
        return None;
    }
    Some(Head {
        record: Record {
            base,
            secondary,
            vary,
            status,
            headers,
            request_time,
            response_time,
            body: Bytes::new(),
        },
        body_len,
        head_len: end as u64,
    })
}

/// Decode a whole file: its head, and a body of exactly the announced length.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    let head = decode_head(bytes)?;
    let body = bytes.get(head.head_len as usize..)?;
    if body.len() as u64 != head.body_len {
        return None;
    }
    let mut record = head.record;
    record.body = Bytes::copy_from_slice(body);
    Some(record)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        self.take(len as usize)
    }
}

/// The file name of a key: hex SHA-256 of `base`, a NUL, and `secondary`.
pub fn file_name(base: &str, secondary: &str) -> String {
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    h.update([0]);
    h.update(secondary.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The disk tier of one cache directory.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    max_size: u64,
    index: Mutex<Index>,
    /// Distinguishes temporary files of concurrent writers.
    temp_seq: AtomicU64,
}

#[derive(Debug, Default)]
struct Index {
    files: HashMap<String, Meta>,
    by_base: HashMap<String, HashSet<String>>,
    total: u64,
    /// Use counter: a larger `used` is more recent.
    clock: u64,
}

#[derive(Debug)]
struct Meta {
    base: String,
    secondary: String,
    vary: Vec<HeaderName>,
    size: u64,
    used: u64,
}

impl Index {
    fn add(&mut self, name: String, meta: Meta) {
        self.remove(&name);
        self.clock += 1;
        self.total += meta.size;
        self.by_base
            .entry(meta.base.clone())
            .or_default()
            .insert(name.clone());
        self.files.insert(
            name,
            Meta {
                used: self.clock,
                ..meta
            },
        );
    }

    fn remove(&mut self, name: &str) -> Option<Meta> {
        let meta = self.files.remove(name)?;
        self.total -= meta.size;
        if let Some(set) = self.by_base.get_mut(&meta.base) {
            set.remove(name);
            if set.is_empty() {
                self.by_base.remove(&meta.base);
            }
        }
        Some(meta)
    }

    /// The least recently used files to delete to bring the total to 90 % of `max`.
    fn victims(&self, max: u64) -> Vec<String> {
        if self.total <= max {
            return Vec::new();
        }
        let target = max / 10 * 9;
        let mut by_age: Vec<(&String, &Meta)> = self.files.iter().collect();
        by_age.sort_by_key(|(_, m)| m.used);
        let mut total = self.total;
        let mut out = Vec::new();
        for (name, meta) in by_age {
            if total <= target {
                break;
            }
            total -= meta.size;
            out.push(name.clone());
        }
        out
    }
}

impl DiskStore {
    /// Open (creating it if needed) the cache directory and index what it holds. Temporary
    /// files left by an interrupted write and files that do not decode are deleted.
    pub fn open(dir: &Path, max_size: u64) -> io::Result<DiskStore> {
        fs::create_dir_all(dir)?;
        let store = DiskStore {
            dir: dir.to_owned(),
            max_size,
            index: Mutex::new(Index::default()),
            temp_seq: AtomicU64::new(0),
        };
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !entry.file_type()?.is_file() || name.len() != 64 {
                continue; // not ours
            }
            match read_head(&path) {
                Some((head, size)) if head.head_len + head.body_len == size => {
                    found.push((head.record.response_time, name, head, size));
                }
                _ => {
                    tracing::warn!(file = %path.display(), "cache: unreadable entry deleted");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        // Oldest first, so the use order of the rebuilt index follows the responses' age.
        found.sort_by_key(|(time, ..)| *time);
        let mut index = store.lock();
        for (_, name, head, size) in found {
            let Record {
                base,
                secondary,
                vary,
                ..
            } = head.record;
            index.add(
                name,
                Meta {
                    base,
                    secondary,
                    vary,
                    size,
                    used: 0,
                },
            );
        }
        let victims = index.victims(max_size);
        store.delete(&mut index, &victims);
        drop(index);
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock leaves a consistent index (each step is one insert
        // or removal), so a poisoned lock is still usable.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn delete(&self, index: &mut Index, names: &[String]) {
        for name in names {
            index.remove(name);
            let _ = fs::remove_file(self.dir.join(name));
        }
    }

    /// Number of entries and their bytes on disk.
    pub fn usage(&self) -> (usize, u64) {
        let index = self.lock();
        (index.files.len(), index.total)
    }

    /// Whether anything is stored for `base` (an index lookup: does not block on the disk).
    pub fn has(&self, base: &str) -> bool {
        self.lock().by_base.contains_key(base)
    }

    /// The stored response for `base` whose `Vary` selects `req_headers`, if any.
    pub fn get(&self, base: &str, req_headers: &HeaderMap) -> Option<Record> {
        let name = {
            let mut index = self.lock();
            let names = index.by_base.get(base)?;
            let name = names
                .iter()
                .find(|n| {
                    index
                        .files
                        .get(*n)
                        .is_some_and(|m| m.secondary == secondary_key(&m.vary, req_headers))
                })?
                .clone();
            index.clock += 1;
            let clock = index.clock;
            if let Some(meta) = index.files.get_mut(&name) {
                meta.used = clock;
            }
            name
        };
        let bytes = fs::read(self.dir.join(&name)).ok();
        match bytes.as_deref().and_then(decode) {
            Some(record) if record.base == base => Some(record),
            _ => {
                // Deleted or damaged behind our back: forget it.
                let mut index = self.lock();
                self.delete(&mut index, std::slice::from_ref(&name));
                None
            }
        }
    }

    /// Write `record` (replacing the one with the same keys), then evict past the size bound.
    pub fn put(&self, record: &Record) -> io::Result<()> {
        let name = file_name(&record.base, &record.secondary);
        let bytes = encode(record);
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{name}-{}-{seq}", std::process::id()));
        let written = fs::File::create(&temp).and_then(|mut f| f.write_all(&bytes));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        let mut index = self.lock();
        if let Err(e) = fs::rename(&temp, self.dir.join(&name)) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        index.add(
            name,
            Meta {
                base: record.base.clone(),
                secondary: record.secondary.clone(),
                vary: record.vary.clone(),
                size: bytes.len() as u64,
                used: 0,
            },
        );
        let victims = index.victims(self.max_size);
        self.delete(&mut index, &victims);
        Ok(())
    }

    /// Delete every stored response for `base`; how many there were.
    pub fn remove(&self, base: &str) -> usize {
        let mut index = self.lock();
        let names: Vec<String> = index
            .by_base
            .get(base)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        self.delete(&mut index, &names);
        names.len()
    }
}

/// Read just enough of a file to decode its head; the head and the file's size.
fn read_head(path: &Path) -> Option<(Head, u64)> {
    let mut file = fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut prefix = [0u8; 12];
    file.read_exact(&mut prefix).ok()?;
    let head_len = u32::from_be_bytes(prefix[8..12].try_into().ok()?);
    if head_len > MAX_HEAD {
        return None;
    }
    let mut bytes = prefix.to_vec();
    bytes.resize(12 + head_len as usize, 0);
    file.read_exact(&mut bytes[12..]).ok()?;
    Some((decode_head(&bytes)?, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(base: &str, secondary: &str, body: &'static [u8]) -> Record {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        Record {
            base: base.to_owned(),
            secondary: secondary.to_owned(),
            vary: if secondary.is_empty() {
                vec![]
            } else {
                vec![HeaderName::from_static("accept-encoding")]
            },
            status: StatusCode::OK,
            headers,
            request_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            response_time: UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn codec_round_trips_and_rejects_damage() {
        let r = record("http://h/a", "accept-encoding:gzip\n", b"hello");
        let bytes = encode(&r);
        assert_eq!(decode(&bytes), Some(r.clone()));
        // Every truncation is refused, as are extra bytes and a wrong magic.
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert_eq!(decode(&wrong), None);
        // The head alone decodes from a prefix.
        let head = decode_head(&bytes[..bytes.len() - 5]).unwrap();
        assert_eq!(head.body_len, 5);
        assert_eq!(head.record.base, "http://h/a");
    }

    #[test]
    fn entries_survive_reopening_and_damage_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        let gz = record("http://h/a", "accept-encoding:gzip\n", b"gz");
        let br = record("http://h/a", "accept-encoding:br\n", b"br");
        store.put(&gz).unwrap();
        store.put(&br).unwrap();
        store.put(&record("http://h/b", "", b"b")).unwrap();
        // Leftovers of an interrupted write, and a damaged entry.
        fs::write(dir.path().join(".tmp-xyz"), b"partial").unwrap();
        fs::write(dir.path().join("f".repeat(64)), b"SYCACHE1junk").unwrap();
        drop(store);

        let store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.usage().0, 3);
        assert!(!dir.path().join(".tmp-xyz").exists());
        assert!(!dir.path().join("f".repeat(64)).exists());
        let mut req = HeaderMap::new();
        req.insert("accept-encoding", HeaderValue::from_static("br"));
        assert_eq!(store.get("http://h/a", &req), Some(br));
        req.insert("accept-encoding", HeaderValue::from_static("gzip"));
        assert_eq!(store.get("http://h/a", &req), Some(gz));
        req.insert("accept-encoding", HeaderValue::from_static("zstd"));
        assert_eq!(store.get("http://h/a", &req), None);
        assert_eq!(store.remove("http://h/a"), 2);
        assert_eq!(store.get("http://h/a", &HeaderMap::new()), None);
        assert_eq!(store.usage().0, 1);
    }

    #[test]
    fn size_bound_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let body: &'static [u8] = &[7u8; 1000];
        let one = encode(&record("http://h/0", "", body)).len() as u64;
        // Room for three entries.
        let store = DiskStore::open(dir.path(), one * 3 + one / 2).unwrap();
        for i in 0..3 {
            store
                .put(&record(&format!("http://h/{i}"), "", body))
                .unwrap();
        }
        // Touch /0 so /1 is now the least recently used.
        assert!(store.get("http://h/0", &HeaderMap::new()).is_some());
        store.put(&record("http://h/3", "", body)).unwrap();
        let (count, bytes) = store.usage();
        assert!(bytes <= one * 3 + one / 2, "{bytes}");
        assert_eq!(count, 3);
        assert!(store.get("http://h/1", &HeaderMap::new()).is_none());
        assert!(store.get("http://h/0", &HeaderMap::new()).is_some());
        assert!(store.get("http://h/3", &HeaderMap::new()).is_some());
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3);
    }
}
