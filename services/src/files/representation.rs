//! What a response says about a file's bytes: media type, entity-tag, modification date, and
//! the identity we use to tell whether the file changed.
//!
//! These are computed once per file version (when it is resolved) and kept, ready-made as
//! `HeaderValue`s, in the route cache, so a cache hit only clones them.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::encoding::Encoding;

/// What identifies a version of a file's content: the same inode with the same size and times.
///
/// `ctime` is included because `mtime` can be set back (`touch -d`, `rsync -t`) while `ctime`
/// cannot: a rewrite that keeps size and mtime still changes the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The modification time, clamped to what an HTTP date can express (1970..9999).
    pub fn modified(&self) -> SystemTime {
        let secs = u64::try_from(self.mtime.0)
            .unwrap_or(0)
            .min(MAX_HTTP_DATE_SECS);
        let nanos = u32::try_from(self.mtime.1).unwrap_or(0).min(999_999_999);
        UNIX_EPOCH + Duration::new(secs, nanos)
    }
}

/// 9999-12-31T23:59:59Z, the last instant `httpdate` can format.
const MAX_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// The media type for a file name, as a `Content-Type` value.
///
/// RFC 9110 §8.3: "A sender that generates a message containing content SHOULD generate a
/// Content-Type header field in that message unless the intended media type of the enclosed
/// representation is unknown to the sender." We send `application/octet-stream` for unknown
/// types (§8.3 lets a recipient treat a missing type as that, we say it explicitly so browsers
/// do not sniff). Textual types get `charset=utf-8`.
pub fn content_type(file_name: &str) -> HeaderValue {
    let Some(mime) = mime_guess::from_path(file_name).first() else {
        return HeaderValue::from_static("application/octet-stream");
    };
    let essence = mime.essence_str();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "xml" | "ecmascript"
        )
        || matches!(mime.suffix().map(|s| s.as_str()), Some("xml" | "json"));
    let value = if textual {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// A strong entity-tag from modification time and size (RFC 9110 §8.8.3), plus the coding for
/// a precompressed variant: `"<mtime ns hex>-<size hex>"` or `"<...>-<size hex>-br"`.
///
/// §8.8.3: "An entity tag can be more reliable for validation than a modification date" — the
/// nanoseconds make two writes within one second differ when the filesystem records them.
pub fn etag(id: &FileId, encoding: Option<Encoding>) -> String {
    let since_epoch = id.modified().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mtime = since_epoch.as_nanos();
    match encoding {
        None => format!("\"{mtime:x}-{:x}\"", id.size),
        Some(e) => format!("\"{mtime:x}-{:x}-{}\"", id.size, e.token()),
    }
}

/// The `Last-Modified` date for a modification time, not later than `now`.
///
/// RFC 9110 §8.8.2.1: "An origin server with a clock MUST NOT generate a Last-Modified date
/// that is later than the server's time of message origination (Date). If the last
/// modification time is derived from implementation-specific metadata that evaluates to some
/// time in the future, according to the origin server's clock, then the origin server MUST
/// replace that value with the message origination date."
pub fn last_modified(modified: SystemTime, now: SystemTime) -> SystemTime {
    let t = modified.min(now).max(UNIX_EPOCH);
    // Keep whole seconds: the header cannot carry more, and conditionals compare seconds.
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_HTTP_DATE_SECS);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Format an HTTP-date (§5.6.7) as a header value. The time must be in 1970..=9999, which
/// [`last_modified`] guarantees.
pub fn http_date(t: SystemTime) -> HeaderValue {
    let clamped = t
        .max(UNIX_EPOCH)
        .min(UNIX_EPOCH + Duration::from_secs(MAX_HTTP_DATE_SECS));
    HeaderValue::from_str(&httpdate::fmt_http_date(clamped)).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let table = [
            ("index.html", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("feed.xml", "text/xml; charset=utf-8"),
            ("logo.svg", "image/svg+xml; charset=utf-8"),
            ("photo.JPG", "image/jpeg"),
            ("archive.tar.gz", "application/gzip"),
            ("noextension", "application/octet-stream"),
            ("weird.qqqzzz", "application/octet-stream"),
        ];
        for (name, want) in table {
            assert_eq!(content_type(name), want, "{name}");
        }
    }

    fn id(mtime: (i64, i64), size: u64) -> FileId {
        FileId {
            dev: 1,
            ino: 2,
            size,
            mtime,
            ctime: (0, 0),
        }
    }

    #[test]
    fn etags_are_strong_and_distinguish_variants() {
        let a = id((1_700_000_000, 5), 1234);
        assert_eq!(etag(&a, None), "\"17979cfe362a0005-4d2\"");
        assert_eq!(
            etag(&a, Some(Encoding::Brotli)),
            "\"17979cfe362a0005-4d2-br\""
        );
        assert_ne!(etag(&a, None), etag(&id((1_700_000_000, 6), 1234), None));
        assert_ne!(etag(&a, None), etag(&id((1_700_000_000, 5), 1235), None));
        // pre-1970 and absurd times do not panic
        assert_eq!(etag(&id((-5, -1), 0), None), "\"0-0\"");
        let _ = http_date(id((i64::MAX, 0), 0).modified());
    }

    #[test]
    fn last_modified_is_never_in_the_future() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            last_modified(UNIX_EPOCH + Duration::new(500, 7), now),
            UNIX_EPOCH + Duration::from_secs(500)
        );
        assert_eq!(
            last_modified(UNIX_EPOCH + Duration::from_secs(5_000), now),
            now
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
