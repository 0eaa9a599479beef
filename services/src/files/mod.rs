//! The files service: static files from a directory, the way nginx's `root` serves them.
//!
//! The whole request path maps onto [`FilesConfig::root`](switchyard_conf::FilesConfig). The
//! wire-format logic is sans-IO and lives in its own modules, each tested on raw inputs:
//! [`path`] (decoding and refusals), [`conditional`] (RFC 9110 §13), [`range`] (§14),
//! [`multipart`] (§14.6 framing), [`encoding`] (`Accept-Encoding` against precompressed
//! siblings), [`representation`] (media type, entity-tag, dates) and [`autoindex`] (listings).
//! [`resolve`] walks the filesystem under the symlink policy, [`cache`] holds routes and small
//! files for the hot path, and [`serve()`] ties them together.
//!
//! This service never compresses on the fly, never writes, never opens anything it has not
//! first found, by name, inside the root (or through a link the policy allows), and never
//! opens anything but a regular file.

pub mod autoindex;
pub mod cache;
pub mod conditional;
pub mod encoding;
pub mod multipart;
pub mod path;
pub mod range;
pub mod representation;
pub mod resolve;
pub mod serve;

#[cfg(test)]
mod tests;

pub use cache::{FileCache, FilesLocation};
pub use serve::{serve, serve_from_memory};
