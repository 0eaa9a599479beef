//! Switchyard's configuration: the model ([`Config`]), loading (TOML + `conf.d/`), validation.
//!
//! This crate knows nothing of sockets or HTTP. It turns text into a validated [`Config`] or a
//! [`ConfError`] that names the file, line and column (syntax, unknown keys, wrong types) or the
//! exact key (semantic errors such as a missing root).

mod model;

pub use model::*;

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
        return Err(ConfError::new(format!("{what}{} is not a directory", dir.display())));
    }
    Ok(root)
}
