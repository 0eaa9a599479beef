//! Switchyard's services: the request/response messages, routing, and the service actors.
//!
//! Nothing here parses protocol bytes. A session hands a [`message::Request`] to the
//! [`router::Router`], which picks the virtual host and location and sends it to that worker's
//! service actor through a bounded mailbox; the reply comes back on a oneshot channel.
//!
//! Two libraries serve the proxy: [`cache`] (the RFC 9111 response cache behind
//! [`cache::CacheLayer`]) and [`redis_routes`] (Hipache-style virtual hosts shared through
//! Redis).

pub mod actor;
pub mod cache;
pub mod files;
pub mod http_date;
pub mod message;
pub mod metrics;
pub mod proxy;
pub mod proxy_cache;
pub mod redis_routes;
pub mod router;
pub mod torrent;
pub mod workers;

pub use message::{Body, BodyPart, BodyStream, FileRange, Frame, Request, Response};
