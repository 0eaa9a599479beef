//! Answering one request for a static-files location: the I/O driver around the sans-IO
//! pieces (path decoding, conditionals, ranges, negotiation, listings).
//!
//! Order of business, each step an early answer:
//!
//! 1. method: GET and HEAD only (405 otherwise);
//! 2. route cache hit → re-validate with one `stat` → respond (see [`super::cache`]);
//! 3. otherwise decode the path (400), apply the dotfile policy (404), walk it under the root
//!    (404/403), then: a directory without `/` redirects (301), a directory with `/` serves its
//!    index, a listing, or 403; a regular file is resolved with its precompressed siblings into
//!    a route, answered and cached; anything else (fifo, socket, device) is 404.
//!
//! Responding to a route: negotiate the encoding, evaluate preconditions (304/412), then take
//! the bytes from the content cache or the open file and apply `Range` (206/416). HEAD is
//! answered exactly like GET except that `Range` is ignored (RFC 9110 §14.2); the session drops
//! the body. Framing headers, `Date` and `Server` are the session's.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ALLOW, CONTENT_RANGE, CONTENT_TYPE, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LOCATION, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use switchyard_conf::{DotfilePolicy, FilesConfig, Limits, SymlinkPolicy};

use super::cache::{FileCache, FilesLocation, NEVER_CHECKED, Route, Variant};
use super::conditional::{self, Precondition, Validators};
use super::encoding::{self, Encoding};
use super::path::{self, RequestPath};
use super::range::{self, RangeOutcome};
use super::representation::{self, FileId};
use super::resolve::{self, Found, ResolveError};
use super::{autoindex, multipart};
use crate::message::{Body, BodyPart, FileRange, Request, Response, SharedFields};

/// How many times a file that changes between `stat` and `open` is resolved again before we
/// give up with 503.
const ATTEMPTS: usize = 3;

/// Characters re-encoded when a redirect target must be rebuilt from decoded segments.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Answer one request for a static-files location. Never panics on client input; never reads a
/// large file whole.
pub fn serve(req: &Request, cfg: &FilesLocation, limits: &Limits, cache: &FileCache) -> Response {
    if let Some(refusal) = refuse_method(req) {
        return refusal;
    }
    let fingerprint = cfg.fingerprint();
    let key = cache.route_key(fingerprint, &req.path);
    if let Some(route) = cache.route(key, fingerprint, &req.path) {
        match respond(req, cfg, limits, cache, &route, Check::Stat, Io::Allowed) {
            Ok(response) => return response,
            Err(Miss::Stale | Miss::NeedsIo) => cache.forget_route(key),
        }
    }
    for _ in 0..ATTEMPTS {
        let route = match resolve_request(req, cfg, fingerprint) {
            Resolution::File(route) => Arc::new(route),
            Resolution::Answer(response) => return response,
        };
        match respond(
            req,
            cfg,
            limits,
            cache,
            &route,
            Check::JustResolved,
            Io::Allowed,
        ) {
            Ok(response) => {
                cache.insert_route(key, route);
                return response;
            }
            Err(Miss::Stale | Miss::NeedsIo) => continue,
        }
    }
    tracing::warn!(path = %req.path, "file kept changing while being served");
    Response::overloaded()
}

/// Answer from what the cache already holds, without touching the filesystem: a route resolved
/// earlier, checked within `file_revalidate`, whose bytes are in memory (or not needed: 304,
/// 412, 416, HEAD of a cached small file). `None` means the answer needs I/O: ask [`serve`].
///
/// This is the read side of the files service's cache, safe to call from a session: it never
/// blocks, never walks a path and never opens a file, so a hit costs no mailbox hop.
pub fn serve_from_memory(
    req: &Request,
    cfg: &FilesLocation,
    limits: &Limits,
    cache: &FileCache,
) -> Option<Response> {
    if let Some(refusal) = refuse_method(req) {
        return Some(refusal);
    }
    let fingerprint = cfg.fingerprint();
    let key = cache.route_key(fingerprint, &req.path);
    let route = cache.route(key, fingerprint, &req.path)?;
    respond(req, cfg, limits, cache, &route, Check::Stat, Io::Forbidden).ok()
}

/// 405 for anything but GET and HEAD.
fn refuse_method(req: &Request) -> Option<Response> {
    if req.method != Method::GET && req.method != Method::HEAD {
        // RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
        // response containing a list of the target resource's currently supported methods."
        let mut response =
            Response::text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        response
            .headers
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(response);
    }
    None
}

/// Why a cached route could not answer.
#[derive(Debug)]
enum Miss {
    /// The file changed (or vanished) since its route was made: resolve again.
    Stale,
    /// Answering needs the filesystem, which the caller ruled out ([`Io::Forbidden`]).
    NeedsIo,
}

/// Whether `respond` may touch the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    Allowed,
    /// Memory only: the session-side read path.
    Forbidden,
}

/// Whether a route's file must be `stat`ed before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// From the cache: confirm the file is still the version the route describes.
    Stat,
    /// Built a moment ago from a fresh `stat`; opening it checks again.
    JustResolved,
}

/// What the slow path found.
enum Resolution {
    File(Route),
    /// Error, redirect, or listing: answered without a route.
    Answer(Response),
}

fn resolve_request(req: &Request, cfg: &FilesConfig, fingerprint: u64) -> Resolution {
    let decoded = match path::decode(&req.path) {
        Ok(decoded) => decoded,
        Err(error) => {
            tracing::debug!(path = %req.path, %error, "refused request path");
            return Resolution::Answer(Response::text(
                StatusCode::BAD_REQUEST,
                "400 Bad Request\n",
            ));
        }
    };
    if cfg.dotfiles == DotfilePolicy::Refuse && decoded.segments.iter().any(|s| path::is_dotfile(s))
    {
        return Resolution::Answer(not_found());
    }
    let walked = match resolve::walk(&cfg.root, &decoded.segments, cfg.symlinks) {
        Ok(walked) => walked,
        Err(error) => return Resolution::Answer(resolve_error(error)),
    };
    let meta = &walked.found.meta;
    if meta.is_dir() {
        if !decoded.trailing_slash {
            return Resolution::Answer(redirect_to_directory(req, &decoded));
        }
        return directory(req, cfg, fingerprint, &decoded, walked.found);
    }
    if !meta.is_file() || decoded.trailing_slash {
        // Fifos, sockets, devices: never opened. `/file/` names no directory.
        return Resolution::Answer(not_found());
    }
    let name = decoded.segments.last().map_or("", String::as_str);
    Resolution::File(build_route(
        req,
        cfg,
        fingerprint,
        &walked.parent,
        name,
        walked.found,
    ))
}

/// A directory requested with its trailing slash: index file, listing, or 403.
fn directory(
    req: &Request,
    cfg: &FilesConfig,
    fingerprint: u64,
    decoded: &RequestPath,
    dir: Found,
) -> Resolution {
    for name in cfg.index.iter().filter(|name| path::is_plain_name(name)) {
        match resolve::child(&dir.path, name, &cfg.root, cfg.symlinks) {
            Ok(found) if found.meta.is_file() => {
                return Resolution::File(build_route(
                    req,
                    cfg,
                    fingerprint,
                    &dir.path,
                    name,
                    found,
                ));
            }
            Ok(_) | Err(ResolveError::NotFound) => continue,
            Err(error) => return Resolution::Answer(resolve_error(error)),
        }
    }
    if !cfg.autoindex {
        return Resolution::Answer(Response::text(StatusCode::FORBIDDEN, "403 Forbidden\n"));
    }
    let (entries, truncated) =
        match autoindex::read(&dir.path, &cfg.root, cfg.symlinks, cfg.dotfiles) {
            Ok(listing) => listing,
            Err(error) => return Resolution::Answer(resolve_error(error.into())),
        };
    let mut display = String::from("/");
    for segment in &decoded.segments {
        display.push_str(segment);
        display.push('/');
    }
    let html = autoindex::render(&display, &entries, truncated);
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Resolution::Answer(Response {
        status: StatusCode::OK,
        headers,
        shared: None,
        body: Body::Bytes(Bytes::from(html)),
    })
}

/// 301 to the same path with a slash, query preserved.
fn redirect_to_directory(req: &Request, decoded: &RequestPath) -> Response {
    // The path is re-sent as received, except that leading slashes are merged: `//host/dir`
    // as a Location would name another host.
    let mut location = String::with_capacity(req.path.len() + 2);
    location.push('/');
    location.push_str(req.path.trim_start_matches('/'));
    location.push('/');
    if let Some(query) = &req.query {
        location.push('?');
        location.push_str(query);
    }
    let value = HeaderValue::from_str(&location).unwrap_or_else(|_| {
        // Not a valid field value as received (possible over HTTP/2 and 3): rebuild the path
        // from its decoded segments, percent-encoded, and drop the query.
        let mut rebuilt = String::from("/");
        for segment in &decoded.segments {
            rebuilt.extend(utf8_percent_encode(segment, SEGMENT));
            rebuilt.push('/');
        }
        HeaderValue::from_str(&rebuilt).unwrap_or(HeaderValue::from_static("/"))
    });
    let mut response = Response::text(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently\n");
    response.headers.insert(LOCATION, value);
    response
}

/// A route for the regular file `found`, requested as `name` in the resolved directory `dir`,
/// with whichever precompressed siblings exist (they pass the same link policy).
fn build_route(
    req: &Request,
    cfg: &FilesConfig,
    fingerprint: u64,
    dir: &std::path::Path,
    name: &str,
    found: Found,
) -> Route {
    let now = SystemTime::now();
    let content_type = representation::content_type(name);
    let mut siblings = Vec::new();
    if cfg.precompressed {
        for encoding in Encoding::ALL {
            let sibling = format!("{name}{}", encoding.suffix());
            let Ok(found) = resolve::child(dir, &sibling, &cfg.root, cfg.symlinks) else {
                continue;
            };
            if found.meta.is_file() {
                siblings.push((encoding, found));
            }
        }
    }
    // The answer depends on Accept-Encoding only when there is a sibling to choose: only then
    // does it carry `Vary: Accept-Encoding` (as nginx's gzip_static does).
    let varies = !siblings.is_empty();
    let encodings = siblings.iter().map(|(encoding, _)| *encoding).collect();
    let mut variants = vec![variant(found, None, content_type.clone(), now, varies)];
    for (encoding, found) in siblings {
        variants.push(variant(
            found,
            Some(encoding),
            content_type.clone(),
            now,
            varies,
        ));
    }
    Route {
        raw_path: req.path.as_str().into(),
        fingerprint,
        variants,
        encodings,
    }
}

fn variant(
    found: Found,
    encoding: Option<Encoding>,
    content_type: HeaderValue,
    now: SystemTime,
    varies: bool,
) -> Variant {
    let id = FileId::of(&found.meta);
    let etag = representation::etag(&id, encoding);
    let modified = representation::last_modified(id.modified(), now);
    let mut variant = Variant {
        path: found.path,
        encoding,
        id,
        content_type,
        etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        etag_text: etag.into_boxed_str(),
        last_modified: representation::http_date(modified),
        modified,
        checked: AtomicU64::new(NEVER_CHECKED),
        varies,
        ok_fields: Arc::new(SharedFields::new(HeaderMap::new())),
    };
    let mut ok_headers = variant.range_headers();
    ok_headers.insert(CONTENT_TYPE, variant.content_type.clone());
    variant.ok_fields = Arc::new(SharedFields::new(ok_headers));
    variant
}

/// Where the chosen variant's bytes come from.
enum Source {
    Memory(Bytes),
    /// An open file, and whether the location lets sessions `sendfile(2)` it.
    Disk(Arc<File>, bool),
}

impl Source {
    fn slice(&self, range: Range<u64>) -> BodyPart {
        match self {
            // Ranges are within the file, whose size fits in memory since it was read whole.
            Source::Memory(bytes) => {
                BodyPart::Bytes(bytes.slice(range.start as usize..range.end as usize))
            }
            Source::Disk(file, sendfile) => BodyPart::File(FileRange {
                file: file.clone(),
                offset: range.start,
                len: range.end - range.start,
                sendfile: *sendfile,
            }),
        }
    }

    fn body(&self, range: Range<u64>) -> Body {
        match self.slice(range) {
            BodyPart::Bytes(bytes) => Body::Bytes(bytes),
            BodyPart::File(file) => Body::File(file),
        }
    }
}

fn respond(
    req: &Request,
    cfg: &FilesConfig,
    limits: &Limits,
    cache: &FileCache,
    route: &Route,
    check: Check,
    io: Io,
) -> Result<Response, Miss> {
    let asks = Asks::of(&req.headers);
    let encoding = if asks.encoding {
        encoding::choose(&req.headers, &route.encodings)
    } else {
        None
    };
    let variant = route.variant(encoding);
    let now_ms = cache.now_ms();
    match check {
        Check::Stat if cache.still_fresh(variant, now_ms) => {}
        Check::Stat if io == Io::Forbidden => return Err(Miss::NeedsIo),
        Check::Stat => {
            let meta = std::fs::metadata(&variant.path).map_err(|_| Miss::Stale)?;
            if FileId::of(&meta) != variant.id {
                return Err(Miss::Stale);
            }
            variant.checked.store(now_ms, Ordering::Relaxed);
        }
        Check::JustResolved => variant.checked.store(now_ms, Ordering::Relaxed),
    }
    let validators = Validators {
        etag: &variant.etag_text,
        last_modified: variant.modified,
    };
    let precondition = if asks.preconditions {
        conditional::evaluate(&req.headers, true, &validators)
    } else {
        Precondition::Proceed
    };
    match precondition {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            // §15.4.5: a 304 carries the ETag, Vary (and Last-Modified to guide caches); no content.
            return Ok(Response {
                status: StatusCode::NOT_MODIFIED,
                headers: variant.validator_headers(),
                shared: None,
                body: Body::Empty,
            });
        }
        Precondition::Failed => {
            return Ok(Response {
                status: StatusCode::PRECONDITION_FAILED,
                headers: variant.validator_headers(),
                shared: None,
                body: Body::Empty,
            });
        }
    }
    let source = match io {
        Io::Allowed => match load(variant, limits, cache, cfg) {
            Ok(source) => source,
            Err(Load::Stale) => return Err(Miss::Stale),
            Err(Load::Answer(response)) => return Ok(*response),
        },
        Io::Forbidden if variant.id.size <= limits.small_file_max => {
            Source::Memory(cache.content(&variant.id).ok_or(Miss::NeedsIo)?)
        }
        Io::Forbidden => return Err(Miss::NeedsIo),
    };
    let len = variant.id.size;
    let outcome = if asks.range && req.method == Method::GET {
        range_outcome(req, &validators, len, limits)
    } else {
        None
    };
    match outcome {
        // The common answer's fields were made with the route: shared, not copied.
        None | Some(RangeOutcome::Full) => Ok(Response {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            shared: Some(Arc::clone(&variant.ok_fields)),
            body: source.body(0..len),
        }),
        Some(RangeOutcome::Unsatisfiable) => {
            // §15.5.17: "a server generating a 416 ... SHOULD generate a Content-Range header
            // field specifying the current length of the selected representation".
            let mut headers = variant.range_headers();
            insert_string(&mut headers, CONTENT_RANGE, range::unsatisfied_range(len));
            Ok(Response {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                shared: None,
                body: Body::Empty,
            })
        }
        Some(RangeOutcome::Partial(ranges)) => Ok(partial(
            variant.range_headers(),
            variant,
            &source,
            &ranges,
            len,
        )),
    }
}

/// Which of the fields that shape a file's answer a request carries, found in one pass over its
/// names: most requests carry none, and a pass costs less than a hash lookup per field.
#[derive(Debug, Default)]
struct Asks {
    /// Accept-Encoding: a precompressed sibling may be chosen.
    encoding: bool,
    /// If-Match, If-None-Match, If-Modified-Since or If-Unmodified-Since (RFC 9110 §13.2.2).
    preconditions: bool,
    /// Range (If-Range only matters with it).
    range: bool,
}

impl Asks {
    fn of(headers: &HeaderMap) -> Asks {
        let mut asks = Asks::default();
        for name in headers.keys() {
            if name == ACCEPT_ENCODING {
                asks.encoding = true;
            } else if name == IF_MATCH
                || name == IF_NONE_MATCH
                || name == IF_MODIFIED_SINCE
                || name == IF_UNMODIFIED_SINCE
            {
                asks.preconditions = true;
            } else if name == RANGE {
                asks.range = true;
            }
        }
        asks
    }
}

/// The `Range` decision for a GET, or `None` when there is no (usable) `Range` header.
fn range_outcome(
    req: &Request,
    validators: &Validators<'_>,
    len: u64,
    limits: &Limits,
) -> Option<RangeOutcome> {
    let mut values = req.headers.get_all(RANGE).iter();
    // Several Range fields cannot be combined into one valid value: ignore them.
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    // §13.2.2 step 5 / §13.1.5: a failed If-Range means "ignore the Range, send it all".
    if !conditional::if_range_permits(&req.headers, validators) {
        return None;
    }
    let specs = range::parse(value.as_bytes())?;
    Some(range::evaluate(&specs, len, limits.max_ranges))
}

/// 206 with one range, or several as multipart/byteranges (RFC 9110 §14.6, §15.3.7).
fn partial(
    mut headers: HeaderMap,
    variant: &Variant,
    source: &Source,
    ranges: &[Range<u64>],
    len: u64,
) -> Response {
    if let [only] = ranges {
        // §15.3.7.1: a single part carries Content-Range and the representation's Content-Type.
        headers.insert(CONTENT_TYPE, variant.content_type.clone());
        insert_string(&mut headers, CONTENT_RANGE, range::content_range(only, len));
        return Response {
            status: StatusCode::PARTIAL_CONTENT,
            headers,
            shared: None,
            body: source.body(only.clone()),
        };
    }
    // §15.3.7.2: several parts; no Content-Range on the whole message.
    let boundary = multipart::boundary();
    insert_string(
        &mut headers,
        CONTENT_TYPE,
        multipart::content_type(&boundary),
    );
    let part_type = variant
        .content_type
        .to_str()
        .unwrap_or("application/octet-stream");
    let parts = multipart::parts(&boundary, part_type, ranges, len, |r| source.slice(r));
    Response {
        status: StatusCode::PARTIAL_CONTENT,
        headers,
        shared: None,
        body: Body::Parts(parts),
    }
}

fn insert_string(headers: &mut HeaderMap, name: http::HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// Why a variant's bytes could not be had.
enum Load {
    /// Not the version the route describes any more.
    Stale,
    /// A definite answer (403 unreadable, 500 I/O error).
    Answer(Box<Response>),
}

/// The variant's bytes: from the content cache, read once into it (small files), or the open
/// file (large ones).
fn load(
    variant: &Variant,
    limits: &Limits,
    cache: &FileCache,
    cfg: &FilesConfig,
) -> Result<Source, Load> {
    let small = variant.id.size <= limits.small_file_max;
    if small {
        if let Some(bytes) = cache.content(&variant.id) {
            return Ok(Source::Memory(bytes));
        }
    }
    let file = open_checked(variant, cfg.symlinks)?;
    if !small {
        return Ok(Source::Disk(Arc::new(file), cfg.sendfile));
    }
    let size = variant.id.size;
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    if let Err(error) = (&file).take(size.saturating_add(1)).read_to_end(&mut buf) {
        tracing::warn!(path = %variant.path.display(), %error, "reading a file failed");
        return Err(Load::Answer(Box::new(Response::internal_error())));
    }
    if buf.len() as u64 != size {
        // Written to while we read: the bytes match no stat we have.
        return Err(Load::Stale);
    }
    let bytes = Bytes::from(buf);
    cache.insert_content(variant.id, bytes.clone());
    Ok(Source::Memory(bytes))
}

/// Open the variant for reading and prove it is the inode its route describes.
///
/// `O_NONBLOCK` makes opening a fifo (swapped in since the walk) return at once instead of
/// waiting for a writer, and has no effect on regular files; `O_NOFOLLOW` refuses a link
/// swapped in for the last component unless links are followed anyway.
fn open_checked(variant: &Variant, symlinks: SymlinkPolicy) -> Result<File, Load> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    if symlinks != SymlinkPolicy::Follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd =
        rustix::fs::open(&variant.path, flags, Mode::empty()).map_err(|errno| match errno {
            Errno::NOENT | Errno::NOTDIR | Errno::LOOP => Load::Stale,
            Errno::ACCESS | Errno::PERM => Load::Answer(Box::new(Response::text(
                StatusCode::FORBIDDEN,
                "403 Forbidden\n",
            ))),
            errno => {
                tracing::warn!(path = %variant.path.display(), %errno, "opening a file failed");
                Load::Answer(Box::new(Response::internal_error()))
            }
        })?;
    let file = File::from(fd);
    match file.metadata() {
        Ok(meta) if meta.is_file() && FileId::of(&meta) == variant.id => Ok(file),
        _ => Err(Load::Stale),
    }
}

fn not_found() -> Response {
    Response::text(StatusCode::NOT_FOUND, "404 Not Found\n")
}

fn resolve_error(error: ResolveError) -> Response {
    match error {
        ResolveError::NotFound => not_found(),
        ResolveError::Forbidden => Response::text(StatusCode::FORBIDDEN, "403 Forbidden\n"),
        ResolveError::Io(error) => {
            tracing::warn!(%error, "resolving a request path failed");
            Response::internal_error()
        }
    }
}
