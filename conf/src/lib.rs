//! Switchyard's configuration: the model ([`Config`]), loading (TOML + `conf.d/`), validation.
//!
//! This crate knows nothing of sockets or HTTP. It turns text into a validated [`Config`] or a
//! [`ConfError`] that names the file, line and column (syntax, unknown keys, wrong types) or the
//! exact key (semantic errors such as a missing root).
//!
//! # Files
//!
//! [`load`] reads FILE, then every `*.toml` in the `conf.d/` directory beside it in file-name
//! order (hidden files skipped). For a scalar key, or a key of `[limits]`, `[timeouts]` or
//! `[log]`, the last file that sets it wins; `[[listen]]` and `[[vhost]]` entries append.
//! Relative paths are resolved against FILE's directory, also in `conf.d/` files.
//!
//! # Schema
//!
//! Every key is optional unless marked required; unknown keys are errors.
//!
//! ```toml
//! workers = 2                   # worker threads, 1..=1024; default: available cores
//!
//! [[listen]]                    # repeatable; default when none: 127.0.0.1:8080
//! address = "127.0.0.1:8080"    # required in a [[listen]]: IP:PORT, "[::]:443" for IPv6
//!
//! [limits]                      # defaults: Limits::default(); all must be greater than 0
//! max_request_line = 8192       # sizes: integer bytes, or "512", "64KiB", "1MiB", "1MB", "2GiB"
//! max_header_bytes = "32KiB"
//! max_headers = 100             # counts: integers
//! max_body = "1MiB"
//! max_connections = 10000
//! service_queue = 1024
//! max_ranges = 16
//! small_file_max = "64KiB"
//! file_cache_bytes = "64MiB"
//!
//! [timeouts]                    # humantime strings; defaults: Timeouts::default()
//! sniff = "10s"                 # all greater than 0, except shutdown = "0s" (exit at once)
//! header = "10s"
//! keepalive = "75s"
//! body = "30s"
//! send = "60s"
//! file_revalidate = "1s"        # how long file metadata is trusted; "0s" = stat every request
//! shutdown = "30s"
//!
//! [log]
//! access = "stderr"             # "stderr" | "stdout" | a file path; absent: no access log
//! access_format = "combined"    # "combined" (default) | "json"
//!
//! [[vhost]]                     # at least one; the first whose names match the Host wins
//! names = ["example.com", "*.example.org"]  # lowercased; absent, [] or "*": any host
//!
//! [[vhost.location]]            # at least one per vhost; longest path prefix wins
//! path = "/"                    # required, starts with "/", unique within the vhost
//! root = "www"                  # required, an existing directory (stored canonical)
//! index = ["index.html"]        # file names tried for a directory; default ["index.html"]
//! autoindex = false             # directory listings; default false
//! symlinks = "inside_root"      # "inside_root" (default) | "follow" | "refuse"
//! dotfiles = "refuse"           # "refuse" (default) | "allow"
//! precompressed = true          # serve x.br / x.zst / x.gz for x; default true
//! ```
//!
//! # Errors
//!
//! [`ConfError`]'s `Display` is the whole message for the operator:
//!
//! - unreadable file: `PATH: <io error>`
//! - syntax, unknown key, wrong type: `PATH:LINE:COLUMN: <toml message>`
//! - meaning: `PATH:LINE:COLUMN: KEY: <message>`, e.g.
//!   `site.toml:7:8: vhost[0].location[1].root: /srv/nope: No such file or directory (os error 2)`.
//!   `KEY` indexes the merged lists, while the position is in the file the value came from.
//! - no vhost at all: `PATH: no [[vhost]]: ...`

mod model;
mod raw;
mod source;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use model::*;
pub use validate::{DEFAULT_LISTEN, MAX_WORKERS};

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be used. Always the operator's to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    msg: String,
}

impl ConfError {
    pub fn new(msg: impl Into<String>) -> Self {
        ConfError { msg: msg.into() }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ConfError {}

/// Canonicalise a directory that must exist. `key` names the config key for the error message.
pub fn canonical_dir(dir: &Path, key: Option<&str>) -> Result<PathBuf, ConfError> {
    let what = key.map(|k| format!("{k}: ")).unwrap_or_default();
    let root = dir
        .canonicalize()
        .map_err(|e| ConfError::new(format!("{what}{}: {e}", dir.display())))?;
    if !root.is_dir() {
        return Err(ConfError::new(format!(
            "{what}{} is not a directory",
            dir.display()
        )));
    }
    Ok(root)
}

/// A validated configuration and the files it was read from, in the order they were applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// The main file first, then the `conf.d/` files in name order.
    pub files: Vec<PathBuf>,
}

/// Read `path` and the `conf.d/*.toml` files beside it, merge them and validate the result.
pub fn load(path: &Path) -> Result<Config, ConfError> {
    load_with_files(path).map(|loaded| loaded.config)
}

/// Like [`load`], also telling which files were read (for logs and `check`).
pub fn load_with_files(path: &Path) -> Result<Loaded, ConfError> {
    let sources = source::read_all(path)?;
    let config = validate::validate(&sources, &base_dir(path)?)?;
    Ok(Loaded {
        config,
        files: sources.into_iter().map(|s| s.path).collect(),
    })
}

/// Validate `text` as if it were the file at `path`, without reading `conf.d/`.
///
/// Relative paths resolve against `path`'s directory; errors name `path`. For tests and for
/// configurations that do not live on disk.
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfError> {
    let source = source::Source::parse(path.to_owned(), text.to_owned())?;
    validate::validate(std::slice::from_ref(&source), &base_dir(path)?)
}

/// The logic of `switchyard check -c FILE`: load and validate, then summarise in one line,
/// e.g. `ok: 2 files, 1 listener, 2 vhosts, 3 locations, 2 workers`.
pub fn check(path: &Path) -> Result<String, ConfError> {
    let Loaded { config, files } = load_with_files(path)?;
    let locations: usize = config.vhosts.iter().map(|v| v.locations.len()).sum();
    Ok(format!(
        "ok: {}, {}, {}, {}, {}",
        counted(files.len(), "file"),
        counted(config.listeners.len(), "listener"),
        counted(config.vhosts.len(), "vhost"),
        counted(locations, "location"),
        counted(config.workers, "worker"),
    ))
}

fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The absolute directory of the main file, against which relative paths resolve.
fn base_dir(path: &Path) -> Result<PathBuf, ConfError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).map_err(|e| ConfError::new(format!("{}: {e}", path.display())))
}
