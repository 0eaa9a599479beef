//! The messages sessions and services exchange.
//!
//! A session (HTTP/1.1, HTTP/2, HTTP/3) turns wire bytes into a [`Request`], a service turns it
//! into a [`Response`], and the session writes that back in its own framing. Services never see
//! protocol bytes; sessions never decide what a request means. Framing headers
//! (`Content-Length`, `Transfer-Encoding`, `Connection`) are the session's business: services
//! describe the body with [`Body`] and the session derives the framing from [`Body::len`].

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

/// One request, as every protocol delivers it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path as received, still percent-encoded, without the query. Always starts with `/`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    pub version: Version,
    /// The host the client addressed (absolute-form authority, `:authority` or `Host`), as sent.
    pub host: Option<String>,
    /// Header fields as received, minus the framing fields the session consumed.
    pub headers: HeaderMap,
    /// `"http"` or `"https"`: how the client reached us.
    pub scheme: &'static str,
    pub peer: SocketAddr,
    /// The request body, already bounded by `limits.max_body`.
    pub body: Bytes,
}

/// One response. The session adds framing, `Date`, `Server` and `Connection` as its protocol
/// requires.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Response {
    /// A response with a short `text/plain` explanation, for errors.
    pub fn text(status: StatusCode, text: &'static str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Response {
            status,
            headers,
            body: Body::Bytes(Bytes::from_static(text.as_bytes())),
        }
    }

    /// A response with no body (304, 204, redirects carry headers only).
    pub fn empty(status: StatusCode) -> Response {
        Response {
            status,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    /// 500: a service failed (or panicked) while handling the request.
    pub fn internal_error() -> Response {
        Response::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n",
        )
    }

    /// 503: the service's mailbox is full or it is not running.
    pub fn overloaded() -> Response {
        let mut r = Response::text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n");
        r.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }
}

/// A response body. Every variant knows its length up front.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    /// Bytes in memory (small cached files, generated pages, multipart boundaries).
    Bytes(Bytes),
    /// A byte range of an open file: streamed in bounded chunks or by `sendfile`, never read whole.
    File(FileRange),
    /// A sequence of the above (multipart/byteranges).
    Parts(Vec<BodyPart>),
}

/// One piece of a [`Body::Parts`].
#[derive(Debug, Clone)]
pub enum BodyPart {
    Bytes(Bytes),
    File(FileRange),
}

/// `len` bytes of `file` starting at `offset`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

impl Body {
    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len,
            Body::Parts(parts) => parts.iter().map(BodyPart::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BodyPart {
    pub fn len(&self) -> u64 {
        match self {
            BodyPart::Bytes(b) => b.len() as u64,
            BodyPart::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
