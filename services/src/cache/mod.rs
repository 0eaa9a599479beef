//! The HTTP cache for proxied responses (RFC 9111, RFC 5861, RFC 9211).
//!
//! * [`directives`] parses `Cache-Control`; [`policy`] decides, as plain functions of headers
//!   and times (no clock, no I/O), what may be stored, for how long, when a stored response may
//!   answer, how to revalidate it and what `Cache-Status` says. Everything the RFCs decide is
//!   there and table-tested.
//! * [`store`] keeps entries: a memory tier bounded in bytes (`quick_cache`) over an optional
//!   [`disk`] tier (one file per entry, atomic writes, an index rebuilt at start, LRU eviction).
//! * [`collapse`] makes concurrent misses for one URI share one upstream request.
//! * [`layer`] ties them into [`CacheLayer::handle`], the one call the proxy makes per request
//!   of a location with `cache = true`; its module docs describe that seam.
//!
//! The cache is shared (RFC 9111 §1): `private` responses and answers to requests with
//! `Authorization` are not stored unless the origin allows it. It stores whole representations
//! of GET (HEAD is answered from them, and a HEAD miss is filled with a GET), never partial
//! content; a `Range` request is answered with the whole representation (200), which RFC 9110
//! §14.2 allows. The client's own preconditions (`If-None-Match`, `If-Modified-Since`) are
//! evaluated here against the stored response, never forwarded.

pub mod collapse;
pub mod directives;
pub mod disk;
pub mod layer;
pub mod policy;
pub mod store;

pub use layer::{CacheLayer, Clock, Forwarded, Refresh, Served, UpstreamResponse, is_purge};
pub use store::Store;
