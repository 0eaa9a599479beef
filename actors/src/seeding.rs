//! Start-up of BitTorrent seeding: the shared torrent store, and hashing of every served file
//! in the background (so peers that hold only an info-hash find it after a restart).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use switchyard_conf::{Config, DotfilePolicy, FilesConfig, Handler, SymlinkPolicy};
use switchyard_services::torrent::metainfo::auto_piece_length;
use switchyard_services::torrent::{FileKey, TorrentStore};

/// Most files hashed at start; a larger tree is hashed on demand past this.
const MAX_FILES_AT_START: usize = 100_000;

/// The store, or `None` when `[torrent]` is disabled. Hashing at start runs on its own thread.
pub fn start(config: &Config) -> Option<Arc<TorrentStore>> {
    let torrent = &config.torrent;
    if !torrent.enabled {
        return None;
    }
    let store = TorrentStore::new(torrent.clone());
    tracing::info!(state_dir = %torrent.state_dir.display(), "seeding served files over BitTorrent");
    if torrent.hash_at_start {
        let locations: Vec<FilesConfig> = config
            .vhosts
            .iter()
            .flat_map(|v| &v.locations)
            .filter_map(|l| match &l.handler {
                Handler::Files(f) => Some(f.clone()),
                // Proxied and metrics locations have no files of ours to seed.
                Handler::Proxy(_) | Handler::Metrics => None,
            })
            .filter(|f| f.seed)
            .collect();
        let default_piece = torrent.piece_length;
        let bg = store.clone();
        let spawned = std::thread::Builder::new()
            .name("hash-at-start".into())
            .spawn(move || {
                let mut keys = Vec::new();
                let mut seen = HashSet::new();
                for files in &locations {
                    walk(files, &files.root, default_piece, &mut seen, &mut keys);
                }
                bg.hash_all(keys);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start hashing at start; files are hashed on demand");
        }
    }
    Some(store)
}

/// Collect the regular files under `dir` as the files service would find them.
fn walk(
    files: &FilesConfig,
    dir: &Path,
    default_piece: Option<u32>,
    seen: &mut HashSet<(std::path::PathBuf, u32)>,
    keys: &mut Vec<FileKey>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if keys.len() >= MAX_FILES_AT_START {
            return;
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if files.dotfiles == DotfilePolicy::Refuse && name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let (path, meta) = if kind.is_symlink() {
            match files.symlinks {
                SymlinkPolicy::Refuse => continue,
                SymlinkPolicy::Follow => match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => (path, meta),
                    _ => continue,
                },
                SymlinkPolicy::InsideRoot => match std::fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&files.root) => {
                        match std::fs::metadata(&target) {
                            Ok(meta) if meta.is_file() => (target, meta),
                            _ => continue,
                        }
                    }
                    _ => continue,
                },
            }
        } else if kind.is_dir() {
            walk(files, &path, default_piece, seen, keys);
            continue;
        } else {
            match entry.metadata() {
                Ok(meta) if meta.is_file() => (path, meta),
                _ => continue,
            }
        };
        let piece = files
            .piece_length
            .or(default_piece)
            .unwrap_or_else(|| auto_piece_length(meta.len()));
        if seen.insert((path.clone(), piece)) {
            keys.push(FileKey::new(&path, &name, &meta, piece));
        }
    }
}
