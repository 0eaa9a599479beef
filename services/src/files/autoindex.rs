//! Directory listings (`autoindex`), for `switchyard serve DIR` and locations that ask for them.
//!
//! [`render`] is a pure function from a directory's entries to HTML: every name is
//! HTML-escaped in text and percent-encoded in its `href`, so a file called
//! `"><script>` or `a b?c#d` lists and links correctly. [`read`] gathers the entries from disk,
//! applying the dotfile and symlink policies and a bound on the listing's size. Listings are
//! never cached: they are generated per request.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use switchyard_conf::{DotfilePolicy, SymlinkPolicy};

use super::path::is_dotfile;
use super::representation::http_date;

/// At most this many entries are listed; a larger directory gets a truncated listing rather
/// than an unbounded page.
pub const MAX_ENTRIES: usize = 10_000;

/// Everything but RFC 3986 unreserved characters is encoded in hrefs.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// Read `dir`'s entries for a listing. Names that are not UTF-8 are left out (they could not
/// be requested: the path decoder refuses them), as are dotfiles unless allowed, and links the
/// policy would not follow (any link under `Refuse`, links leaving `root` under `InsideRoot`)
/// or that lead nowhere. Returns the entries (sorted: directories first, then by name) and
/// whether the listing was truncated.
pub fn read(
    dir: &Path,
    root: &Path,
    symlinks: SymlinkPolicy,
    dotfiles: DotfilePolicy,
) -> std::io::Result<(Vec<Entry>, bool)> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for dirent in fs::read_dir(dir)? {
        let Ok(dirent) = dirent else { continue };
        let Ok(name) = dirent.file_name().into_string() else {
            continue;
        };
        if dotfiles == DotfilePolicy::Refuse && is_dotfile(&name) {
            continue;
        }
        let Ok(file_type) = dirent.file_type() else {
            continue;
        };
        let meta = if file_type.is_symlink() {
            let path = dirent.path();
            let allowed = match symlinks {
                SymlinkPolicy::Refuse => false,
                SymlinkPolicy::Follow => true,
                SymlinkPolicy::InsideRoot => {
                    fs::canonicalize(&path).is_ok_and(|t| t.starts_with(root))
                }
            };
            if !allowed {
                continue;
            }
            fs::metadata(path)
        } else {
            dirent.metadata()
        };
        let Ok(meta) = meta else { continue };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        if entries.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        entries.push(Entry {
            name,
            is_dir: meta.is_dir(),
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    sort(&mut entries);
    Ok((entries, truncated))
}

/// Directories first, then by name (byte order).
pub fn sort(entries: &mut [Entry]) {
    entries.sort_unstable_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
}

/// The HTML page for a directory. `display_path` is the decoded request path of the directory
/// (ending in `/`); it is escaped here. A `..` link is shown except at the root.
pub fn render(display_path: &str, entries: &[Entry], truncated: bool) -> String {
    let mut html = String::with_capacity(512 + entries.len() * 160);
    let title = escape(display_path);
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    let _ = write!(html, "<title>Index of {title}</title>");
    html.push_str("<style>td{padding:0 1em 0 0}td.s{text-align:right}</style></head>\n<body>\n");
    let _ = writeln!(html, "<h1>Index of {title}</h1>");
    html.push_str("<table>\n<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n");
    if display_path != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td class=\"s\">-</td><td></td></tr>\n");
    }
    for entry in entries {
        let href = utf8_percent_encode(&entry.name, HREF);
        let name = escape(&entry.name);
        let slash = if entry.is_dir { "/" } else { "" };
        let _ = write!(
            html,
            "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td>"
        );
        if entry.is_dir {
            html.push_str("<td class=\"s\">-</td>");
        } else {
            let _ = write!(html, "<td class=\"s\">{}</td>", entry.size);
        }
        match entry.modified.map(http_date) {
            Some(date) => {
                let _ = writeln!(
                    html,
                    "<td>{}</td></tr>",
                    escape(date.to_str().unwrap_or_default())
                );
            }
            None => html.push_str("<td></td></tr>\n"),
        }
    }
    html.push_str("</table>\n");
    if truncated {
        let _ = writeln!(
            html,
            "<p>Only the first {MAX_ENTRIES} entries are listed.</p>"
        );
    }
    html.push_str("</body></html>\n");
    html
}

/// Escape text for HTML element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn file(name: &str, size: u64) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir: false,
            size,
            modified: None,
        }
    }

    fn dir(name: &str) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir: true,
            size: 4096,
            modified: None,
        }
    }

    #[test]
    fn escaping_table() {
        let table = [
            ("plain.txt", "plain.txt"),
            ("a&b", "a&amp;b"),
            ("<script>", "&lt;script&gt;"),
            ("\"><img src=x>", "&quot;&gt;&lt;img src=x&gt;"),
            ("it's", "it&#39;s"),
            ("été", "été"),
        ];
        for (raw, want) in table {
            assert_eq!(escape(raw), want);
        }
    }

    #[test]
    fn names_are_escaped_and_hrefs_encoded() {
        let html = render(
            "/a&b/",
            &[file("\"><script>x</script>", 3), file("a b?c#d%.txt", 1)],
            false,
        );
        assert!(html.contains("<title>Index of /a&amp;b/</title>"), "{html}");
        assert!(
            html.contains("href=\"%22%3E%3Cscript%3Ex%3C%2Fscript%3E\""),
            "{html}"
        );
        assert!(
            html.contains(">&quot;&gt;&lt;script&gt;x&lt;/script&gt;</a>"),
            "{html}"
        );
        assert!(
            html.contains("href=\"a%20b%3Fc%23d%25.txt\">a b?c#d%.txt</a>"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn listing_shape() {
        let mut entries = vec![
            file("b.txt", 10),
            dir("zdir"),
            file("a.txt", 2048),
            dir("adir"),
        ];
        sort(&mut entries);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["adir", "zdir", "a.txt", "b.txt"]);
        entries[2].modified = Some(UNIX_EPOCH + Duration::from_secs(784_111_777));
        let html = render("/sub/", &entries, false);
        assert!(html.contains("<a href=\"../\">../</a>"));
        assert!(html.contains("<a href=\"adir/\">adir/</a></td><td class=\"s\">-</td>"));
        assert!(html.contains("<a href=\"a.txt\">a.txt</a></td><td class=\"s\">2048</td><td>Sun, 06 Nov 1994 08:49:37 GMT</td>"));
        let order: Vec<usize> = ["adir/", "zdir/", "a.txt", "b.txt"]
            .iter()
            .filter_map(|n| html.find(&format!(">{n}</a>")))
            .collect();
        assert!(
            order.len() == 4 && order.windows(2).all(|w| w[0] < w[1]),
            "{html}"
        );
        assert!(!render("/", &entries, false).contains("../"));
        assert!(render("/", &entries, true).contains("Only the first"));
    }
}
