//! The torrent service: every served file is also a torrent, seeded from this server.
//!
//! - [`metainfo`]: the v1 info dictionary, `.torrent` file (with a BEP 19 web seed) and magnet.
//! - [`store`]: hashing off the network threads (bounded, single-flight, cached on disk) and the
//!   registry (info-hash → file) that peer sessions and the tracker read as a snapshot.
//! - [`tracker`]: the built-in tracker's state and wire format, sans-IO.
//! - [`slots`]: round-robin upload slots and the upload rate limit, sans-IO.
//! - [`http`]: `GET /<file>.torrent`, `/<file>.magnet`, `/announce`, `/scrape`.
//!
//! The peer wire itself is a session (`switchyard-sessions`' `peer`), on the same port as HTTP.
//! This service never writes into a served tree: its only state lives in `torrent.state_dir`.

pub mod http;
pub mod metainfo;
pub mod slots;
pub mod store;
pub mod tracker;

pub use store::{FileKey, Seeded, TorrentStore};
