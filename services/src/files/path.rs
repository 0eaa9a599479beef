//! Request path → list of file-name segments, decoded exactly once.
//!
//! This is the only place a request path is percent-decoded, and it happens before the path
//! touches the filesystem. Everything that could make a name mean something other than "this
//! entry in that directory" is refused here, so the resolver only ever joins plain names:
//!
//! * invalid percent-encoding, a decoded NUL, a backslash (raw or `%5C`), an encoded slash
//!   (`%2F`), a `..` segment in any spelling (`..`, `%2e%2e`, `.%2E`, ...), or a name that is
//!   not UTF-8 after decoding → [`PathError`], answered 400;
//! * empty segments (`//`) and `.` segments (also `%2e`) are **collapsed**, as nginx's
//!   `merge_slashes` and RFC 3986 §5.2.4 dot-segment removal would: `/a//./b` names `/a/b`.
//!   A path whose last segment is empty or `.` ends in a directory marker (`trailing_slash`).
//!
//! Decoding happens once: `%252e` becomes the literal three-character name `%2e`, never `.`.
//! Whether a segment is a dotfile is a policy question, answered by [`is_dotfile`] and the caller.

use std::fmt;

/// A request path that is safe to join, segment by segment, under a root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded names, none empty, none `.` or `..`, none containing `/`, `\` or NUL.
    pub segments: Vec<String>,
    /// The path ended with `/` (or `/.`): it asks for a directory.
    pub trailing_slash: bool,
}

/// Why a request path was refused. Every variant is the client's fault and maps to 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (origin-form is required).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A NUL byte, raw or `%00`.
    Nul,
    /// A backslash, raw or `%5C`: a separator on other systems, never a name character here.
    Backslash,
    /// `%2F`: a slash hidden inside a segment.
    EncodedSlash,
    /// A `..` segment, in any spelling.
    DotDot,
    /// The decoded bytes of a segment are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path does not start with /",
            PathError::BadPercentEncoding => "invalid percent-encoding",
            PathError::Nul => "NUL in path",
            PathError::Backslash => "backslash in path",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::DotDot => "dot-dot segment in path",
            PathError::NotUtf8 => "path is not UTF-8",
        })
    }
}

impl std::error::Error for PathError {}

/// Decode a raw (percent-encoded) request path into safe segments.
pub fn decode(raw: &str) -> Result<RequestPath, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments = Vec::new();
    let mut trailing_slash = true; // "/" alone names the root directory
    // Split on raw slashes first: a decoded `%2F` can then never become a separator.
    for raw_segment in rest.split('/') {
        let name = decode_segment(raw_segment)?;
        match name.as_str() {
            "" | "." => trailing_slash = true,
            ".." => return Err(PathError::DotDot),
            _ => {
                trailing_slash = false;
                segments.push(name);
            }
        }
    }
    Ok(RequestPath {
        segments,
        trailing_slash,
    })
}

/// Percent-decode one segment (RFC 3986 §2.1), refusing bytes that are not plain name bytes.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&b| hex_value(b));
                let lo = bytes.get(i + 2).and_then(|&b| hex_value(b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadPercentEncoding);
                };
                i += 3;
                let decoded = hi << 4 | lo;
                if decoded == b'/' {
                    return Err(PathError::EncodedSlash);
                }
                decoded
            }
            other => {
                i += 1;
                other
            }
        };
        match byte {
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::Backslash),
            _ => out.push(byte),
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A segment that names a hidden file or directory (`.git`, `.env`, `.well-known`).
pub fn is_dotfile(segment: &str) -> bool {
    segment.starts_with('.')
}

/// A name that may be joined under a directory as one entry: used for configured index names,
/// which do not come from the client but must not be able to climb out either.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_paths() {
        let table: &[(&str, &[&str], bool)] = &[
            ("/", &[], true),
            ("/a", &["a"], false),
            ("/a/", &["a"], true),
            ("/a/b.txt", &["a", "b.txt"], false),
            ("//a//b", &["a", "b"], false),
            ("/a/./b", &["a", "b"], false),
            ("/a/%2e/b", &["a", "b"], false),
            ("/a/.", &["a"], true),
            ("/a/%2E", &["a"], true),
            ("/a%20b", &["a b"], false),
            ("/%C3%A9t%C3%A9", &["été"], false),
            ("/été", &["été"], false),
            // decoded once: %252e is the literal name "%2e", %252e%252e is "%2e%2e"
            ("/%252e", &["%2e"], false),
            ("/%252e%252e/x", &["%2e%2e", "x"], false),
            ("/%252f", &["%2f"], false),
            ("/...", &["..."], false),
            ("/.hidden", &[".hidden"], false),
            ("/a..b", &["a..b"], false),
            ("/..a", &["..a"], false),
        ];
        for (raw, segments, slash) in table {
            let got = decode(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got.segments, *segments, "{raw}");
            assert_eq!(got.trailing_slash, *slash, "{raw}");
        }
    }

    #[test]
    fn refused_paths() {
        use PathError::*;
        let table: &[(&str, PathError)] = &[
            ("", NotAbsolute),
            ("a/b", NotAbsolute),
            ("*", NotAbsolute),
            ("/..", DotDot),
            ("/../etc/passwd", DotDot),
            ("/a/../../etc", DotDot),
            ("/a/..", DotDot),
            ("/a/../", DotDot),
            ("/%2e%2e/etc", DotDot),
            ("/%2E%2E/etc", DotDot),
            ("/.%2e/etc", DotDot),
            ("/%2e./etc", DotDot),
            ("/a/%2e%2e", DotDot),
            ("/a%2fb", EncodedSlash),
            ("/a%2F..%2Fb", EncodedSlash),
            ("/%2f", EncodedSlash),
            ("/a\\b", Backslash),
            ("/..\\etc", Backslash),
            ("/a%5cb", Backslash),
            ("/a%5C..%5Cb", Backslash),
            ("/a%00b", Nul),
            ("/a\0b", Nul),
            ("/a%", BadPercentEncoding),
            ("/a%2", BadPercentEncoding),
            ("/a%zz", BadPercentEncoding),
            ("/a%%32%65", BadPercentEncoding),
            ("/a%g0", BadPercentEncoding),
            ("/%ff", NotUtf8),
            ("/%c3", NotUtf8),
            ("/%c0%ae%c0%ae/etc", NotUtf8), // overlong "..", not UTF-8
        ];
        for (raw, err) in table {
            assert_eq!(decode(raw), Err(*err), "{raw:?}");
        }
    }

    #[test]
    fn dotfiles_and_plain_names() {
        assert!(is_dotfile(".git"));
        assert!(is_dotfile(".well-known"));
        assert!(!is_dotfile("a.b"));
        assert!(!is_dotfile("%2e"));
        assert!(is_plain_name("index.html"));
        for bad in ["", ".", "..", "a/b", "/etc", "a\\b", "a\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
