//! A request head as HTTP/2 and HTTP/3 deliver it: pseudo-header fields already parsed (by
//! `switchyard_wire::h2` or `switchyard_wire::h3`) into an `http::Request`. Both sessions turn it into the services' [`Request`] the same
//! way, and keep the same facts for the access log.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use switchyard_services::message::{Body, BodyStream, Request, Response, SharedFields};
use switchyard_wire::h2::Known;

use crate::access_log::{AccessEntry, AccessLog};
use crate::date::with_http_date;

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

    /// Whether the router takes the request: an origin-form target (`/...`), or `*` of a
    /// server-wide OPTIONS (RFC 9113 §8.3.1, RFC 9114 §4.3.1). Anything else is answered 400.
    pub fn routable(&self) -> bool {
        let path = self.path();
        path.starts_with('/') || (path == "*" && self.method == Method::OPTIONS)
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

/// RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
pub(crate) fn never_has_content(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// A response as HTTP/2 and HTTP/3 send it: without connection-specific fields, with the
/// Content-Length it announces, and with its body only when one is sent.
pub(crate) struct Outgoing {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub shared: Option<std::sync::Arc<SharedFields>>,
    pub content_length: Option<u64>,
    /// `None` for a response to HEAD and for a status that never carries content.
    pub body: Option<Body>,
}

impl Outgoing {
    pub fn new(response: Response, is_head: bool) -> Outgoing {
        let Response {
            status,
            mut headers,
            shared,
            body,
        } = response;
        let bodiless = never_has_content(status);
        strip_connection_fields(&mut headers);
        Outgoing {
            status,
            headers,
            shared,
            content_length: if bodiless { None } else { body.known_len() },
            body: (!(bodiless || is_head)).then_some(body),
        }
    }

    /// This response, if its head fits in `limit`; otherwise a bare 500 without content.
    ///
    /// `limit` is what the client said it accepts: HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE or
    /// HTTP/3 SETTINGS_MAX_FIELD_SECTION_SIZE, both counted as name + value + 32 octets per
    /// field. RFC 9113 §6.5.2 and RFC 9114 §4.2.2: a sender SHOULD NOT exceed it, "as the peer
    /// will likely refuse to process it". A 500 tells the client what a refused head would
    /// not; the original body (a file, a member's stream) is dropped unread.
    pub fn within(self, limit: Option<u64>, alt_svc: Option<&HeaderValue>) -> Outgoing {
        let Some(limit) = limit else {
            return self;
        };
        let mut size = SectionSize(STATUS_FIELD_SIZE);
        self.fields(&mut size, alt_svc);
        if size.0 <= limit {
            return self;
        }
        tracing::debug!(
            status = self.status.as_u16(),
            size = size.0,
            limit,
            "response head over the client's header list limit: answering 500"
        );
        Outgoing {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: HeaderMap::new(),
            shared: None,
            content_length: Some(0),
            body: self.body.map(|_| Body::Empty),
        }
    }

    /// Write the head's fields (see [`write_response_fields`]).
    pub fn fields(&self, w: &mut impl FieldSink, alt_svc: Option<&HeaderValue>) {
        write_response_fields(
            w,
            &self.headers,
            self.shared.as_deref(),
            self.content_length,
            alt_svc,
        );
    }
}

/// A response encoder's field writer: HPACK's (HTTP/2) or QPACK's (HTTP/3).
pub(crate) trait FieldSink {
    fn field(&mut self, name: &str, value: &[u8]);
    fn known(&mut self, field: Known, value: &[u8]);
}

/// `:status` as a header list counts it: 7 octets of name, 3 of value, 32 of overhead.
const STATUS_FIELD_SIZE: u64 = 7 + 3 + 32;

/// A header list's size as HPACK and QPACK limits count it (RFC 7541 §4.1).
struct SectionSize(u64);

impl FieldSink for SectionSize {
    fn field(&mut self, name: &str, value: &[u8]) {
        self.0 += (name.len() + value.len() + 32) as u64;
    }

    fn known(&mut self, field: Known, value: &[u8]) {
        self.field(field.name(), value);
    }
}

impl FieldSink for switchyard_wire::h2::FieldWriter<'_> {
    fn field(&mut self, name: &str, value: &[u8]) {
        switchyard_wire::h2::FieldWriter::field(self, name, value);
    }

    fn known(&mut self, field: Known, value: &[u8]) {
        switchyard_wire::h2::FieldWriter::known(self, field, value);
    }
}

impl FieldSink for switchyard_wire::h3::FieldWriter<'_> {
    fn field(&mut self, name: &str, value: &[u8]) {
        switchyard_wire::h3::FieldWriter::field(self, name, value);
    }

    fn known(&mut self, field: Known, value: &[u8]) {
        switchyard_wire::h3::FieldWriter::known(self, field, value);
    }
}

/// A response head's fields, given to the encoder from where they are: the response's own
/// map, then the shared fields it does not override, then the session's (`Server`, `Date`,
/// `Content-Length`, `Alt-Svc`). No map is built or copied. `headers` has had its
/// connection-specific fields removed ([`strip_connection_fields`]).
fn write_response_fields(
    w: &mut impl FieldSink,
    headers: &HeaderMap,
    shared: Option<&SharedFields>,
    content_length: Option<u64>,
    alt_svc: Option<&HeaderValue>,
) {
    for (name, value) in headers {
        if name != header::SERVER && name != header::DATE && name != header::ALT_SVC {
            w.field(name.as_str(), value.as_bytes());
        }
    }
    if let Some(shared) = shared {
        for (name, value) in shared.map() {
            if headers.is_empty() || !headers.contains_key(name) {
                w.field(name.as_str(), value.as_bytes());
            }
        }
    }
    w.known(Known::Server, b"switchyard");
    with_http_date(|date| w.known(Known::Date, date));
    if let Some(len) = content_length {
        w.known(
            Known::ContentLength,
            itoa::Buffer::new().format(len).as_bytes(),
        );
    }
    if let Some(alt_svc) = alt_svc {
        w.known(Known::AltSvc, alt_svc.as_bytes());
    }
}

/// RFC 9113 §8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
/// connection-specific header fields. [...] Connection, Proxy-Connection, Keep-Alive,
/// Transfer-Encoding, and Upgrade" and "TE [...] MUST NOT contain any value other than
/// 'trailers'"; RFC 9114 §4.2 says the same of HTTP/3. Also drops `Content-Length`, which the
/// session derives from the body.
pub(crate) fn strip_connection_fields(headers: &mut HeaderMap) {
    // One pass over the names (no hashing) answers the usual case, where services set none of
    // these; the removals below run only when one is present. `Date`, `Server` and `Alt-Svc`
    // need no removal: [`write_response_fields`] skips them.
    let connection_specific = |name: &HeaderName| {
        name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::TE
            || name == header::CONTENT_LENGTH
            || name == "keep-alive"
            || name == "proxy-connection"
    };
    if !headers.keys().any(connection_specific) {
        return;
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x-a: b` and a 3-octet body: 42 (`:status`) + 36 (`x-a`) + 48 (`server: switchyard`)
    /// + 65 (`date`, always 29 octets) + 47 (`content-length: 3`) = 238.
    fn small() -> Response {
        let mut response = Response::text(StatusCode::OK, "abc");
        response.headers = HeaderMap::new();
        response
            .headers
            .insert("x-a", HeaderValue::from_static("b"));
        response
    }

    #[test]
    fn a_head_over_the_clients_limit_becomes_a_bare_500() {
        let fits = Outgoing::new(small(), false).within(Some(238), None);
        assert_eq!(fits.status, StatusCode::OK);
        assert_eq!(fits.headers.len(), 1);
        assert_eq!(fits.content_length, Some(3));
        assert!(matches!(fits.body, Some(Body::Bytes(_))));

        let over = Outgoing::new(small(), false).within(Some(237), None);
        assert_eq!(over.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(over.headers.is_empty() && over.shared.is_none());
        assert_eq!(over.content_length, Some(0));
        assert!(matches!(over.body, Some(Body::Empty)));

        // Alt-Svc counts: 7 + 15 + 32 more.
        let alt_svc = HeaderValue::from_static("h3=\":443\"; ma=9");
        let with = Outgoing::new(small(), false).within(Some(238 + 54), Some(&alt_svc));
        assert_eq!(with.status, StatusCode::OK);
        let with = Outgoing::new(small(), false).within(Some(238 + 53), Some(&alt_svc));
        assert_eq!(with.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn without_a_limit_nothing_changes_and_a_head_answer_stays_bodiless() {
        let any = Outgoing::new(small(), false).within(None, None);
        assert_eq!((any.status, any.content_length), (StatusCode::OK, Some(3)));
        let head = Outgoing::new(small(), true).within(Some(100), None);
        assert_eq!(head.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(head.body.is_none(), "a HEAD answer still has no body");
    }
}
