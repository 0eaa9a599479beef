//! Finding a decoded request path on disk, one segment at a time, under the root.
//!
//! The resolver only ever joins names that [`super::path::decode`] accepted (no `/`, `..` or
//! NUL), so the only way out of the root is a symbolic link. Each segment is `lstat`ed; a link
//! is then handled by the [`SymlinkPolicy`]:
//!
//! * `Refuse`: any link → 403;
//! * `InsideRoot`: the link is canonicalised and followed only if the target lies under the
//!   (canonical) root, else 403. The walk continues from the canonical target, so the path we
//!   hand back contains no links at all;
//! * `Follow`: the link is followed wherever it goes.
//!
//! Nothing is opened here: only `lstat`/`stat`/`realpath`. Fifos, sockets and devices are
//! reported as found and refused by the caller without ever being opened (opening a fifo for
//! reading blocks until a writer appears).
//!
//! The walk checks names, then the caller opens the file: a local user who can rename things
//! inside the root between the two could swap a checked directory for a link. The caller
//! narrows that window by opening with `O_NOFOLLOW` (unless links are followed anyway) and by
//! checking that the opened file is the very inode the walk found.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use switchyard_conf::SymlinkPolicy;

/// Why a path could not be resolved.
#[derive(Debug)]
pub enum ResolveError {
    /// Missing, or a file where a directory was needed (404).
    NotFound,
    /// A link the policy refuses, or no permission to look (403).
    Forbidden,
    /// Anything else the filesystem said (500).
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(e: io::Error) -> Self {
        match Errno::from_io_error(&e) {
            Some(Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG | Errno::LOOP) => {
                ResolveError::NotFound
            }
            Some(Errno::ACCESS | Errno::PERM) => ResolveError::Forbidden,
            _ => ResolveError::Io(e),
        }
    }
}

/// A resolved entry: where it is (links resolved as the policy says) and what it is.
#[derive(Debug)]
pub struct Found {
    /// The path to open. Under `InsideRoot` and `Refuse`, free of symbolic links.
    pub path: PathBuf,
    /// `stat` of the entry (after following an allowed link).
    pub meta: Metadata,
}

/// The result of walking a whole request path.
#[derive(Debug)]
pub struct Walked {
    /// The directory the last segment was found in (the root for `/`).
    pub parent: PathBuf,
    pub found: Found,
}

/// Walk `segments` under `root` (canonical). Every intermediate entry must be a directory.
pub fn walk(
    root: &Path,
    segments: &[String],
    policy: SymlinkPolicy,
) -> Result<Walked, ResolveError> {
    let mut current = Found {
        path: root.to_path_buf(),
        meta: fs::metadata(root)?,
    };
    let mut parent = root.to_path_buf();
    for segment in segments {
        if !current.meta.is_dir() {
            return Err(ResolveError::NotFound);
        }
        let next = child(&current.path, segment, root, policy)?;
        parent = std::mem::replace(&mut current, next).path;
    }
    Ok(Walked {
        parent,
        found: current,
    })
}

/// Look up one plain `name` inside the resolved directory `dir`, applying the link policy.
pub fn child(
    dir: &Path,
    name: &str,
    root: &Path,
    policy: SymlinkPolicy,
) -> Result<Found, ResolveError> {
    let path = dir.join(name);
    let meta = fs::symlink_metadata(&path)?;
    if !meta.file_type().is_symlink() {
        return Ok(Found { path, meta });
    }
    match policy {
        SymlinkPolicy::Refuse => Err(ResolveError::Forbidden),
        SymlinkPolicy::Follow => {
            let meta = fs::metadata(&path)?;
            Ok(Found { path, meta })
        }
        SymlinkPolicy::InsideRoot => {
            let target = fs::canonicalize(&path)?;
            // `starts_with` compares whole components: `/srv/www2` is not under `/srv/www`.
            if !target.starts_with(root) {
                return Err(ResolveError::Forbidden);
            }
            let meta = fs::metadata(&target)?;
            Ok(Found { path: target, meta })
        }
    }
}
