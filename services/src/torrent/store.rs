//! The torrents this server seeds: hashing, the on-disk hash cache, and the registry.
//!
//! Hashing runs on tokio's blocking pool, never on a network thread, at most
//! `torrent.hash_threads` files at a time. Concurrent requests for the same file share one
//! hashing (single-flight). The info dictionary is cached in `state_dir/pieces/`, keyed by path,
//! name, size, modification time and piece length: a changed file has a new key and is hashed
//! again. The registry (info-hash → file) is a snapshot in an `ArcSwap`: peer sessions and the
//! tracker read it without locks; the store is its only writer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use librqbit_core::Id20;
use rustix::fs::{Mode, OFlags};
use sha1::{Digest, Sha1};
use switchyard_conf::TorrentConfig;
use switchyard_wire::mse::torrent_key;
use tokio::sync::{OnceCell, Semaphore};

use super::metainfo::{Info, info_hash};
use super::slots::{Choker, RateLimit};
use super::tracker::Tracker;

/// How often a long hashing reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One seeded file.
#[derive(Debug)]
pub struct Seeded {
    pub info_hash: Id20,
    /// The bencoded info dictionary (what ut_metadata serves).
    pub info: Bytes,
    pub name: String,
    pub length: u64,
    pub piece_length: u32,
    key: FileKey,
}

impl Seeded {
    /// Open the file for a peer connection, proving it is still the version that was hashed
    /// (same size and modification time). Seeded files are not kept open: a directory of more
    /// files than the process may open would otherwise leave no descriptor for a connection.
    pub fn open(&self) -> io::Result<File> {
        // O_NONBLOCK: a fifo swapped in since the hashing must not block the worker in open(2)
        // waiting for a writer; on a regular file it changes nothing.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = File::from(rustix::fs::open(&self.key.path, flags, Mode::empty())?);
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() != self.key.size || mtime_ns(&meta) != self.key.mtime_ns {
            return Err(io::Error::other("the file changed since it was hashed"));
        }
        Ok(file)
    }
}

/// Modification time in nanoseconds since the epoch (0 where the platform has none).
fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

/// What identifies one version of one file for hashing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub mtime_ns: i128,
    pub piece_length: u32,
}

impl FileKey {
    pub fn new(path: &Path, name: &str, meta: &std::fs::Metadata, piece_length: u32) -> FileKey {
        FileKey {
            path: path.to_path_buf(),
            name: name.to_owned(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            piece_length,
        }
    }

    /// File name of the cache entry: SHA-1 of the key's fields.
    fn cache_name(&self) -> String {
        let mut h = Sha1::new();
        h.update(self.path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(self.name.as_bytes());
        h.update(self.size.to_le_bytes());
        h.update(self.mtime_ns.to_le_bytes());
        h.update(self.piece_length.to_le_bytes());
        let digest: [u8; 20] = h.finalize().into();
        format!("{}.info", Id20::new(digest).as_string())
    }
}

/// Why a file could not be hashed.
#[derive(Debug, Clone)]
pub struct HashError(pub String);

type Flight = Arc<OnceCell<Result<Arc<Seeded>, HashError>>>;

/// What is seeded: by info-hash, and by the name an encrypted handshake gives it.
///
/// Behind a lock rather than republished whole on every change: serving a directory of N
/// files publishes N torrents, and copying the map each time made that quadratic.
#[derive(Debug, Default)]
struct Registry {
    by_hash: HashMap<Id20, Arc<Seeded>>,
    /// BEP 8 (Message Stream Encryption): HASH('req2', info-hash) → info-hash.
    by_obfuscated: HashMap<[u8; 20], Id20>,
}

impl Registry {
    fn insert(&mut self, seeded: &Arc<Seeded>) {
        self.by_obfuscated
            .insert(torrent_key(&seeded.info_hash.0), seeded.info_hash);
        self.by_hash.insert(seeded.info_hash, seeded.clone());
    }

    fn remove(&mut self, hash: &Id20) {
        self.by_obfuscated.remove(&torrent_key(&hash.0));
        self.by_hash.remove(hash);
    }
}

/// Everything BitTorrent shares across workers: registry, tracker, upload slots, limits.
#[derive(Debug)]
pub struct TorrentStore {
    pub config: TorrentConfig,
    /// Our peer id (`-SY0001-` and 12 random bytes, Azureus style).
    pub peer_id: Id20,
    registry: RwLock<Registry>,
    /// Current torrent of each path (to replace it when the file changes).
    by_path: Mutex<HashMap<PathBuf, Arc<Seeded>>>,
    inflight: Mutex<HashMap<FileKey, Flight>>,
    hash_slots: Semaphore,
    pub tracker: Mutex<Tracker>,
    pub choker: Mutex<Choker>,
    pub upload: Option<Mutex<RateLimit>>,
    /// Live peer-wire connections.
    pub peers: AtomicUsize,
    cache_dir: Option<PathBuf>,
}

impl TorrentStore {
    pub fn new(config: TorrentConfig) -> Arc<TorrentStore> {
        let mut peer_id = *b"-SY0001-000000000000";
        let mut rng = fastrand::Rng::new();
        for b in &mut peer_id[8..] {
            *b = rng.alphanumeric() as u8;
        }
        let cache_dir = config.state_dir.join("pieces");
        let cache_dir = match std::fs::create_dir_all(&cache_dir) {
            Ok(()) => Some(cache_dir),
            Err(e) => {
                tracing::warn!(dir = %cache_dir.display(), error = %e, "cannot create the torrent state directory; piece hashes will not be cached");
                None
            }
        };
        Arc::new(TorrentStore {
            peer_id: Id20::new(peer_id),
            registry: RwLock::default(),
            by_path: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            hash_slots: Semaphore::new(config.hash_threads),
            tracker: Mutex::new(Tracker::new(config.announce_interval)),
            choker: Mutex::new(Choker::new(config.max_unchoked, Duration::from_secs(10))),
            upload: config.upload_rate.map(|r| Mutex::new(RateLimit::new(r))),
            peers: AtomicUsize::new(0),
            cache_dir,
            config,
        })
    }

    /// The file seeded under `hash`, if any.
    pub fn lookup(&self, hash: &Id20) -> Option<Arc<Seeded>> {
        self.read().by_hash.get(hash).cloned()
    }

    /// Whether we seed `hash`.
    pub fn seeds(&self, hash: &Id20) -> bool {
        self.read().by_hash.contains_key(hash)
    }

    /// Up to `limit` of the info-hashes we seed, in no particular order.
    pub fn info_hashes(&self, limit: usize) -> Vec<Id20> {
        self.read().by_hash.keys().take(limit).copied().collect()
    }

    /// How many files are seeded.
    pub fn torrents(&self) -> usize {
        self.read().by_hash.len()
    }

    /// The info-hash whose BEP 8 HASH('req2', info-hash) is `key`, if we seed it.
    pub fn by_obfuscated_hash(&self, key: &[u8; 20]) -> Option<Id20> {
        self.read().by_obfuscated.get(key).copied()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The torrent of the file `key` describes: from memory, else the disk cache, else hashed.
    /// Concurrent callers for the same key share one hashing.
    pub async fn torrent(self: &Arc<Self>, key: FileKey) -> Result<Arc<Seeded>, HashError> {
        if let Some(seeded) = self.current(&key) {
            return Ok(seeded);
        }
        let flight: Flight = {
            let mut inflight = lock(&self.inflight);
            inflight.entry(key.clone()).or_default().clone()
        };
        let result = flight
            .get_or_init(|| {
                let store = self.clone();
                let key = key.clone();
                async move {
                    let Ok(_permit) = store.hash_slots.acquire().await else {
                        return Err(HashError("hashing stopped".into()));
                    };
                    let worker = store.clone();
                    let k = key.clone();
                    match tokio::task::spawn_blocking(move || worker.load_or_hash(&k)).await {
                        Ok(result) => result,
                        Err(e) => Err(HashError(format!("hashing task failed: {e}"))),
                    }
                }
            })
            .await
            .clone();
        lock(&self.inflight).remove(&key);
        let seeded = result?;
        self.publish(&seeded);
        Ok(seeded)
    }

    fn current(&self, key: &FileKey) -> Option<Arc<Seeded>> {
        lock(&self.by_path)
            .get(&key.path)
            .filter(|s| s.key == *key)
            .cloned()
    }

    /// Put `seeded` in the registry, replacing an older version of the same path.
    fn publish(&self, seeded: &Arc<Seeded>) {
        let mut by_path = lock(&self.by_path);
        let old = by_path.insert(seeded.key.path.clone(), seeded.clone());
        if old.as_ref().is_some_and(|o| Arc::ptr_eq(o, seeded)) {
            return;
        }
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = old {
            registry.remove(&old.info_hash);
        }
        registry.insert(seeded);
    }

    /// Blocking: read the cached info dictionary or hash the file.
    fn load_or_hash(&self, key: &FileKey) -> Result<Arc<Seeded>, HashError> {
        let file =
            File::open(&key.path).map_err(|e| HashError(format!("{}: {e}", key.path.display())))?;
        let cached = self.cache_dir.as_ref().map(|d| d.join(key.cache_name()));
        let from_cache = cached.as_ref().and_then(|p| {
            let bytes = std::fs::read(p).ok()?;
            let info = Info::decode(&bytes).ok()?;
            (info.length == key.size && info.piece_length == key.piece_length)
                .then_some((info, bytes))
        });
        let (info, bytes) = match from_cache {
            Some(hit) => hit,
            None => {
                let info = hash_file(&file, key)?;
                let bytes = info.encode();
                if let Some(path) = &cached {
                    write_atomically(path, &bytes);
                }
                (info, bytes)
            }
        };
        Ok(Arc::new(Seeded {
            info_hash: info_hash(&bytes),
            info: Bytes::from(bytes),
            name: info.name,
            length: info.length,
            piece_length: info.piece_length,
            key: key.clone(),
        }))
    }

    /// Hash (or load from the cache) every file in `files` with bounded parallelism, logging
    /// progress. Runs on the calling thread's own runtime; meant for a background thread.
    pub fn hash_all(self: &Arc<Self>, files: Vec<FileKey>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the hashing runtime");
                return;
            }
        };
        let total_files = files.len();
        let total_bytes: u64 = files.iter().map(|k| k.size).sum();
        let started = Instant::now();
        tracing::info!(
            files = total_files,
            bytes = total_bytes,
            "hashing served files for seeding"
        );
        runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let mut done_files = 0usize;
            let mut done_bytes = 0u64;
            let mut failed = 0usize;
            let mut last_report = Instant::now();
            let mut pending = files.into_iter();
            loop {
                while set.len() < self.config.hash_threads * 2 {
                    let Some(key) = pending.next() else { break };
                    let store = self.clone();
                    set.spawn(async move {
                        let size = key.size;
                        (size, store.torrent(key).await.is_ok())
                    });
                }
                let Some(joined) = set.join_next().await else {
                    break;
                };
                let (size, ok) = joined.unwrap_or((0, false));
                done_files += 1;
                done_bytes += size;
                failed += usize::from(!ok);
                if last_report.elapsed() >= PROGRESS_EVERY {
                    last_report = Instant::now();
                    tracing::info!(
                        files = done_files,
                        of = total_files,
                        bytes = done_bytes,
                        of_bytes = total_bytes,
                        "hashing progress"
                    );
                }
            }
            tracing::info!(
                files = done_files,
                failed,
                bytes = done_bytes,
                seconds = started.elapsed().as_secs_f64(),
                torrents = self.torrents(),
                "hashing done: every served file is seeded"
            );
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (single inserts).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SHA-1 of every piece, reading the file sequentially in piece-sized chunks.
fn hash_file(mut file: &File, key: &FileKey) -> Result<Info, HashError> {
    let err = |e: std::io::Error| HashError(format!("{}: {e}", key.path.display()));
    let pl = key.piece_length as usize;
    let mut buf = vec![0u8; pl];
    let mut pieces = Vec::with_capacity(key.size.div_ceil(pl as u64) as usize * 20);
    let mut left = key.size;
    let started = Instant::now();
    let mut last_report = started;
    while left > 0 {
        let want = (left as usize).min(pl);
        file.read_exact(&mut buf[..want]).map_err(err)?;
        pieces.extend_from_slice(&Sha1::digest(&buf[..want]));
        left -= want as u64;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            tracing::info!(
                path = %key.path.display(),
                done = key.size - left,
                of = key.size,
                "hashing a large file"
            );
        }
    }
    tracing::debug!(path = %key.path.display(), bytes = key.size, ms = started.elapsed().as_millis() as u64, "hashed");
    Ok(Info {
        name: key.name.clone(),
        length: key.size,
        piece_length: key.piece_length,
        pieces,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "cannot cache piece hashes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(state: &Path) -> Arc<TorrentStore> {
        TorrentStore::new(TorrentConfig {
            state_dir: state.to_path_buf(),
            ..TorrentConfig::default()
        })
    }

    #[actix_rt::test]
    async fn hashes_once_caches_on_disk_and_rehashes_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let key = |p: &Path| FileKey::new(p, "f.bin", &std::fs::metadata(p).unwrap(), 16384);

        let s = store(&dir.path().join("state"));
        // Concurrent requests share one hashing: the same Arc comes back.
        let (a, b) = tokio::join!(s.torrent(key(&path)), s.torrent(key(&path)));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.length, 100_000);
        let info = Info::decode(&a.info).unwrap();
        assert_eq!(info.pieces.len(), 7 * 20);
        assert_eq!(&info.pieces[..20], &Sha1::digest(&data[..16384])[..]);
        assert!(s.seeds(&a.info_hash));

        // A second store (a restart) finds the hashes on disk.
        let cached: Vec<_> = std::fs::read_dir(dir.path().join("state/pieces"))
            .unwrap()
            .collect();
        assert_eq!(cached.len(), 1);
        let s2 = store(&dir.path().join("state"));
        assert_eq!(s2.torrent(key(&path)).await.unwrap().info_hash, a.info_hash);

        // A changed file gets a new info-hash, and the old one is no longer seeded.
        std::fs::write(&path, &data[..50_000]).unwrap();
        let changed = s.torrent(key(&path)).await.unwrap();
        assert_ne!(changed.info_hash, a.info_hash);
        assert!(s.seeds(&changed.info_hash));
        assert!(!s.seeds(&a.info_hash));
        // The encrypted handshake's name for a torrent follows it too.
        assert_eq!(
            s.by_obfuscated_hash(&torrent_key(&changed.info_hash.0)),
            Some(changed.info_hash)
        );
        assert_eq!(s.by_obfuscated_hash(&torrent_key(&a.info_hash.0)), None);
        assert_eq!(s.torrents(), 1);
    }

    /// A peer connection opens the file the torrent was made from, and refuses anything else
    /// at that path: a changed file, or a fifo (without blocking the worker on it).
    #[actix_rt::test]
    async fn a_peer_gets_the_hashed_version_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"some bytes").unwrap();
        let key = FileKey::new(&path, "f.bin", &std::fs::metadata(&path).unwrap(), 16384);
        let s = store(&dir.path().join("state"));
        let seeded = s.torrent(key).await.unwrap();
        let mut text = String::new();
        seeded.open().unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "some bytes");

        std::fs::write(&path, b"other bytes").unwrap();
        assert!(seeded.open().is_err(), "a changed file was opened");

        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(seeded.open().is_err(), "a fifo was opened");
    }
}
