//! A request head as HTTP/2 and HTTP/3 deliver it: pseudo-header fields already parsed (by
//! `switchyard_wire::h2` or by `h3`) into an `http::Request`. Both sessions turn it into the services' [`Request`] the same
//! way, and keep the same facts for the access log.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Uri, Version};
use switchyard_services::message::{BodyStream, Request};

use crate::access_log::{AccessEntry, AccessLog};

/// The fields of one request head, with the authority settled.
pub(crate) struct Head {
    pub method: Method,
    uri: Uri,
    pub headers: HeaderMap,
    /// `:authority`, else `Host`.
    pub host: Option<String>,
}

/// A `Host` header that names another authority than `:authority`: the request is malformed
/// (RFC 9113 §8.3.1 and §8.1.1: stream error PROTOCOL_ERROR; RFC 9114 §4.3.1:
/// H3_MESSAGE_ERROR).
pub(crate) struct HostMismatch;

impl Head {
    pub fn new(parts: http::request::Parts) -> Result<Head, HostMismatch> {
        let http::request::Parts {
            method,
            uri,
            headers,
            ..
        } = parts;
        // RFC 9113 §8.3.1 and RFC 9114 §4.3.1: without `:authority`, `Host` may carry it; "A
        // server SHOULD treat a request as malformed if it contains a Host header field that
        // identifies an entity that differs from the entity in the :authority pseudo-header
        // field."
        let host_header = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let host = match (uri.authority(), host_header) {
            (Some(authority), Some(host)) if !authority.as_str().eq_ignore_ascii_case(host) => {
                return Err(HostMismatch);
            }
            (Some(authority), _) => Some(authority.as_str().to_owned()),
            (None, host) => host.map(str::to_owned),
        };
        Ok(Head {
            method,
            uri,
            headers,
            host,
        })
    }

    /// The path, or "" when the target has none (`*`-less authority form): such a request is
    /// not one the services take.
    pub fn path(&self) -> &str {
        self.uri.path_and_query().map_or("", |pq| pq.path())
    }

    pub fn query(&self) -> Option<&str> {
        self.uri.path_and_query().and_then(|pq| pq.query())
    }

    /// Whether the target is origin-form (`/...`); `*` and the rest are answered 400.
    pub fn routable(&self) -> bool {
        self.path().starts_with('/')
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// The `Content-Length` the client announced, if it is a number.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// What the access log keeps, taken before the head goes to the router; `None` when there
    /// is no access log (nothing is copied then). Boxed: a request's future holds it across
    /// every wait, and without a log it then takes one word there.
    pub fn log_facts(&self, log: Option<&AccessLog>) -> Option<Box<LogFacts>> {
        log?;
        let path = self.path();
        Some(Box::new(LogFacts {
            method: self.method.clone(),
            target: match self.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            },
            referer: header_string(&self.headers, header::REFERER),
            user_agent: header_string(&self.headers, header::USER_AGENT),
            host: self.host.clone(),
            started: Instant::now(),
        }))
    }

    /// The services' request.
    pub fn into_request(
        self,
        version: Version,
        scheme: &'static str,
        peer: SocketAddr,
        body: Bytes,
        stream: Option<BodyStream>,
    ) -> Request {
        let path = self.path().to_owned();
        let query = self.query().map(str::to_owned);
        Request {
            path,
            query,
            host: self.host,
            method: self.method,
            version,
            headers: self.headers,
            scheme,
            peer,
            body,
            stream,
        }
    }
}

/// What the access log needs of a request after the request itself went to the router.
pub(crate) struct LogFacts {
    method: Method,
    target: String,
    referer: Option<String>,
    user_agent: Option<String>,
    host: Option<String>,
    started: Instant,
}

impl LogFacts {
    /// Write the entry: `protocol` as the log shows it (`HTTP/2.0`), `bytes` of body sent.
    pub fn record(
        &self,
        log: &AccessLog,
        peer: SocketAddr,
        protocol: &str,
        status: StatusCode,
        bytes: u64,
    ) {
        log.record(&AccessEntry {
            peer,
            time: SystemTime::now(),
            method: self.method.as_str(),
            target: &self.target,
            protocol,
            status: status.as_u16(),
            bytes,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            duration: self.started.elapsed(),
            host: self.host.as_deref(),
        });
    }
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
