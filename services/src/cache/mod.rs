//! The HTTP cache for proxied responses (RFC 9111).
//!
//! [`directives`] parses `Cache-Control`; [`policy`] decides, as plain functions of headers and
//! times, what may be stored, for how long, and when a stored response may answer.

pub mod directives;
pub mod policy;
