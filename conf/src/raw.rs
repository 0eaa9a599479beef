//! The TOML file exactly as written: every key optional, unknown keys refused, spans kept.
//!
//! One [`RawFile`] is deserialized per file (the main file, then each `conf.d/*.toml`), so a
//! span always belongs to one known file. Nothing here applies defaults or checks meaning: that
//! is `crate::validate`'s job, which merges the files and reports semantic errors at these spans.
//! Values whose meaning is checked later (sizes, durations, policies, paths) stay strings here so
//! the error can name the key, not just the position.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use toml::Spanned;

use crate::units::parse_size;

/// One configuration file. See the crate docs for the schema.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub workers: Option<Spanned<i64>>,
    pub listen: Option<Vec<Spanned<RawListen>>>,
    pub limits: Option<RawLimits>,
    pub timeouts: Option<RawTimeouts>,
    pub log: Option<RawLog>,
    pub tls: Option<RawTls>,
    pub http2: Option<RawHttp2>,
    pub quic: Option<crate::quic::RawQuic>,
    pub vhost: Option<Vec<Spanned<RawVhost>>>,
    pub torrent: Option<crate::torrent::RawTorrent>,
    pub cache: Option<crate::cache::RawCache>,
    pub redis_routes: Option<crate::redis_routes::RawRedisRoutes>,
    pub upstream: Option<Vec<Spanned<crate::proxy::RawUpstream>>>,
}

/// `[[listen]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub address: Option<Spanned<String>>,
}

/// `[limits]`: sizes accept integers or unit strings, counts only integers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_request_line: Option<Spanned<RawSize>>,
    pub max_header_bytes: Option<Spanned<RawSize>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_body: Option<Spanned<RawSize>>,
    pub max_connections: Option<Spanned<i64>>,
    pub service_queue: Option<Spanned<i64>>,
    pub max_ranges: Option<Spanned<i64>>,
    pub small_file_max: Option<Spanned<RawSize>>,
    pub file_cache_bytes: Option<Spanned<RawSize>>,
}

/// `[timeouts]`: humantime strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub sniff: Option<Spanned<String>>,
    pub header: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub send: Option<Spanned<String>>,
    pub shutdown: Option<Spanned<String>>,
    pub file_revalidate: Option<Spanned<String>>,
    pub tls_handshake: Option<Spanned<String>>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub access: Option<Spanned<String>>,
    pub access_format: Option<Spanned<String>>,
}

/// `[tls]`: the default certificate, resumption, and the `[[tls.certificate]]` SNI entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub session_cache: Option<Spanned<i64>>,
    pub tickets: Option<Spanned<bool>>,
    pub certificate: Option<Vec<Spanned<RawSniCert>>>,
}

/// `[[tls.certificate]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSniCert {
    pub names: Option<Vec<Spanned<String>>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// `[http2]`: sizes as in `[limits]`, counts as integers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp2 {
    pub max_concurrent_streams: Option<Spanned<i64>>,
    pub initial_stream_window: Option<Spanned<RawSize>>,
    pub initial_connection_window: Option<Spanned<RawSize>>,
    pub max_frame_size: Option<Spanned<RawSize>>,
    pub max_header_list_size: Option<Spanned<RawSize>>,
    pub max_pending_resets: Option<Spanned<i64>>,
    pub max_error_resets: Option<Spanned<i64>>,
}

/// `[[vhost]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVhost {
    pub names: Option<Vec<Spanned<String>>>,
    pub location: Option<Vec<Spanned<RawLocation>>>,
}

/// `[[vhost.location]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocation {
    pub path: Option<Spanned<String>>,
    pub cache: Option<Spanned<bool>>,
    pub root: Option<Spanned<String>>,
    pub index: Option<Vec<Spanned<String>>>,
    pub autoindex: Option<bool>,
    pub symlinks: Option<Spanned<String>>,
    pub dotfiles: Option<Spanned<String>>,
    pub precompressed: Option<bool>,
    pub sendfile: Option<bool>,
    pub seed: Option<bool>,
    pub piece_length: Option<Spanned<RawSize>>,
    pub proxy: Option<Spanned<String>>,
    pub strip_prefix: Option<bool>,
    pub max_body: Option<Spanned<RawSize>>,
    pub forwarded: Option<bool>,
    pub request_headers: Option<Spanned<crate::proxy::RawHeaderEdits>>,
    pub response_headers: Option<Spanned<crate::proxy::RawHeaderEdits>>,
    pub metrics: Option<Spanned<bool>>,
}

/// A size as written: `65536` or `"64KiB"`. Parsed by `crate::units::parse_size` later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawSize {
    Bytes(i64),
    Text(String),
}

impl RawSize {
    /// The size in bytes. The error is a sentence fragment meant to follow `key: `.
    pub(crate) fn bytes(&self) -> Result<u64, String> {
        match self {
            RawSize::Bytes(n) => {
                u64::try_from(*n).map_err(|_| format!("a size cannot be negative, got {n}"))
            }
            RawSize::Text(text) => parse_size(text),
        }
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: integer bytes or a string such as \"64KiB\" or \"1MB\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                i64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}
