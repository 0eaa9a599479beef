//! Configuration files on disk: which ones are read, in what order, and where in them a problem is.
//!
//! A configuration is the main file plus every `*.toml` in the `conf.d/` directory beside it, in
//! file-name order. Each file is parsed on its own into a [`RawFile`] and keeps its text, so any
//! error (syntax, unknown key, wrong type, or a semantic error found later) can be reported as
//! `PATH:LINE:COLUMN: message` with 1-based line and column.
//!
//! Hidden files (`.#10-site.toml` editor locks and the like) and directories in `conf.d/` are
//! skipped. A missing `conf.d/` is not an error; an unreadable one is.

use crate::ConfError;
use crate::raw::RawFile;
use std::fmt::Display;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One parsed configuration file.
#[derive(Debug)]
pub(crate) struct Source {
    /// As given (main file) or joined onto the main file's directory (`conf.d/` files).
    pub path: PathBuf,
    /// Kept to turn byte spans into line and column.
    text: String,
    pub raw: RawFile,
}

impl Source {
    /// Read and parse one file. Errors: `PATH: <io error>` or `PATH:LINE:COLUMN: <toml error>`.
    pub fn read(path: &Path) -> Result<Source, ConfError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfError::new(format!("{}: {e}", path.display())))?;
        Source::parse(path.to_owned(), text)
    }

    /// Parse text already in memory as if it were the file at `path`.
    pub fn parse(path: PathBuf, text: String) -> Result<Source, ConfError> {
        match toml::from_str::<RawFile>(&text) {
            Ok(raw) => Ok(Source { path, text, raw }),
            Err(e) => {
                let message = e.message().trim_end();
                Err(match e.span() {
                    Some(span) => {
                        let (line, column) = position(&text, span.start);
                        ConfError::new(format!("{}:{line}:{column}: {message}", path.display()))
                    }
                    None => ConfError::new(format!("{}: {message}", path.display())),
                })
            }
        }
    }

    /// A semantic error about `key`, whose value (or table header) is at `span` in this file:
    /// `PATH:LINE:COLUMN: KEY: MESSAGE`.
    pub fn error(&self, span: Range<usize>, key: &str, message: impl Display) -> ConfError {
        let (line, column) = position(&self.text, span.start);
        ConfError::new(format!(
            "{}:{line}:{column}: {key}: {message}",
            self.path.display()
        ))
    }
}

/// The main file followed by the `conf.d/*.toml` files beside it, in file-name order, all parsed.
pub(crate) fn read_all(main: &Path) -> Result<Vec<Source>, ConfError> {
    let mut sources = vec![Source::read(main)?];
    for path in conf_d_files(main)? {
        sources.push(Source::read(&path)?);
    }
    Ok(sources)
}

/// The `*.toml` files of `main`'s `conf.d/` directory, sorted by file name.
fn conf_d_files(main: &Path) -> Result<Vec<PathBuf>, ConfError> {
    let dir = main.parent().unwrap_or(Path::new("")).join("conf.d");
    let dir_error = |e: io::Error| ConfError::new(format!("{}: {e}", dir.display()));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_error(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(dir_error)?;
        let name = entry.file_name();
        let path = Path::new(&name);
        let hidden = name.as_encoded_bytes().starts_with(b".");
        if hidden || path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        // Follows symlinks. A broken link is kept so that reading it reports the problem.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    // Count UTF-8 leading bytes, so a multi-byte character is one column.
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\ncd\né = 1\n";
        let cases = [
            (0, (1, 1)),
            (1, (1, 2)),
            (3, (2, 1)),
            (5, (2, 3)),
            (6, (3, 1)),
            (8, (3, 2)),
        ];
        for (offset, want) in cases {
            assert_eq!(position(text, offset), want, "offset {offset}");
        }
        assert_eq!(position(text, 1000), (4, 1), "past the end clamps");
    }

    #[test]
    fn conf_d_lists_toml_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.toml");
        std::fs::write(&main, "").unwrap();
        let conf_d = dir.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        for name in [
            "20-b.toml",
            "10-a.toml",
            "readme.txt",
            ".#10-a.toml",
            "99-z.toml.bak",
        ] {
            std::fs::write(conf_d.join(name), "").unwrap();
        }
        std::fs::create_dir(conf_d.join("dir.toml")).unwrap();
        let files = conf_d_files(&main).unwrap();
        assert_eq!(
            files,
            vec![conf_d.join("10-a.toml"), conf_d.join("20-b.toml")]
        );
    }

    #[test]
    fn missing_conf_d_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            conf_d_files(&dir.path().join("main.toml")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = Source::read(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: ", missing.display())),
            "{err}"
        );
    }
}
