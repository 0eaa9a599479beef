//! `[quic]`: the QUIC endpoint every listener also opens on UDP at the same port (HTTP/3 and
//! `hq-interop`).
//!
//! Kept in its own module, model, raw form and validation together, so the rest of the
//! configuration only carries one field for it.
//!
//! ```toml
//! [quic]
//! enabled = true               # UDP on every listen address, Alt-Svc over TLS
//! retry = "above 1000/s"       # "never" | "always" | "above N/s" new connections per second
//! max_connections = 10000      # QUIC connections of the process; more are refused
//! idle_timeout = "30s"         # max_idle_timeout transport parameter
//! max_streams_bidi = 256       # initial_max_streams_bidi, 1 ..= 1000 (raised as streams end)
//! stream_window = "2MiB"       # what a client may send on one stream unacknowledged
//! connection_window = "16MiB"  # ... and on the whole connection
//! send_window = "16MiB"        # response bytes buffered per connection for sending
//! zero_rtt = true              # accept early data (only GET/HEAD served from it, else 425)
//! qlog_dir = "/var/log/qlog"   # one .sqlog file per connection; absent: none
//! congestion = "cubic"         # "cubic" | "bbr" | "newreno"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::ConfError;
use crate::raw::{RawFile, RawSize};
use crate::source::Source;
use crate::units::parse_duration;
use crate::validate::{At, last};

/// RFC 9000 §4.6 allows up to 2^60 streams; we announce at most this many at once and raise
/// the limit (MAX_STREAMS) as streams finish.
pub const MAX_STREAMS_BIDI: u32 = 1000;

/// The largest flow-control window we accept from the configuration (quinn's VarInt bound is
/// far higher; a window beyond 1 GiB is a typo, not a tuning).
const MAX_QUIC_WINDOW: u64 = 1 << 30;

/// How the QUIC endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicConfig {
    /// Open the UDP endpoint on every listener and advertise it with Alt-Svc.
    pub enabled: bool,
    /// When a new connection must first prove its address with a Retry (RFC 9000 §8.1.2).
    pub retry: RetryPolicy,
    /// QUIC connections the process holds at once; past this new ones are refused
    /// (CONNECTION_REFUSED).
    pub max_connections: usize,
    /// The max_idle_timeout transport parameter: a silent connection is closed after this.
    pub idle_timeout: Duration,
    /// initial_max_streams_bidi; quinn grants more (MAX_STREAMS) as streams finish.
    pub max_streams_bidi: u32,
    /// initial_max_stream_data_bidi_remote: bytes a client may send on one stream ahead of us.
    pub stream_window: u64,
    /// initial_max_data: bytes a client may send on the connection ahead of us.
    pub connection_window: u64,
    /// Bytes of responses buffered per connection beyond what the client acknowledged.
    pub send_window: u64,
    /// Accept 0-RTT early data (TLS `max_early_data_size`); only safe methods are served from it.
    pub zero_rtt: bool,
    /// Write a qlog (JSON-SEQ, `.sqlog`) per connection into this directory.
    pub qlog_dir: Option<PathBuf>,
    /// The congestion controller of every connection.
    pub congestion: Congestion,
}

/// Congestion controllers quinn offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// CUBIC (RFC 9438), what most QUIC and TCP stacks use.
    #[default]
    Cubic,
    /// BBR (quinn's experimental BBRv1): paced by bandwidth and RTT estimates, not by loss.
    Bbr,
    /// NewReno (RFC 9002 §7).
    NewReno,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            enabled: true,
            retry: RetryPolicy::AboveRate(1000),
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(30),
            max_streams_bidi: 256,
            stream_window: 2 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            send_window: 16 * 1024 * 1024,
            zero_rtt: true,
            qlog_dir: None,
            congestion: Congestion::Cubic,
        }
    }
}

/// When to answer a new connection with a Retry packet before accepting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Never: every handshake takes one round trip less; amplification is still bounded to
    /// 3× by the protocol (RFC 9000 §8.1).
    Never,
    /// Always: every new connection proves its address first.
    Always,
    /// Only while more than this many new connections per second arrive (a flood).
    AboveRate(u32),
}

/// `[quic]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuic {
    pub enabled: Option<Spanned<bool>>,
    pub retry: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_streams_bidi: Option<Spanned<i64>>,
    pub stream_window: Option<Spanned<RawSize>>,
    pub connection_window: Option<Spanned<RawSize>>,
    pub send_window: Option<Spanned<RawSize>>,
    pub zero_rtt: Option<Spanned<bool>>,
    pub qlog_dir: Option<Spanned<String>>,
    pub congestion: Option<Spanned<String>>,
}

/// Merge and check `[quic]` (the last file that sets a key wins). `base` resolves `qlog_dir`.
pub(crate) fn validate(sources: &[Source], base: &Path) -> Result<QuicConfig, ConfError> {
    let d = QuicConfig::default();
    let key = |name: &str| format!("quic.{name}");
    let enabled = flag(sources, |q| q.enabled.as_ref(), d.enabled);
    let zero_rtt = flag(sources, |q| q.zero_rtt.as_ref(), d.zero_rtt);
    let retry = match last(sources, |f| quic(f).and_then(|q| q.retry.as_ref())) {
        None => d.retry,
        Some(at) => parse_retry(at.value()).map_err(|e| at.error(&key("retry"), e))?,
    };
    let max_connections = match last(sources, |f| {
        quic(f).and_then(|q| q.max_connections.as_ref())
    }) {
        None => d.max_connections,
        Some(at) => match usize::try_from(*at.value()) {
            Ok(0) | Err(_) => return Err(at.error(&key("max_connections"), "must be at least 1")),
            Ok(n) => n,
        },
    };
    let max_streams_bidi = match last(sources, |f| {
        quic(f).and_then(|q| q.max_streams_bidi.as_ref())
    }) {
        None => d.max_streams_bidi,
        Some(at) => match u32::try_from(*at.value()) {
            Ok(n) if (1..=MAX_STREAMS_BIDI).contains(&n) => n,
            _ => {
                return Err(at.error(
                    &key("max_streams_bidi"),
                    format_args!("must be between 1 and {MAX_STREAMS_BIDI}"),
                ));
            }
        },
    };
    let idle_timeout = match last(sources, |f| quic(f).and_then(|q| q.idle_timeout.as_ref())) {
        None => d.idle_timeout,
        Some(at) => {
            parse_idle_timeout(at.value()).map_err(|e| at.error(&key("idle_timeout"), e))?
        }
    };
    let window = |name: &str, default: u64, get: fn(&RawQuic) -> Option<&Spanned<RawSize>>| {
        let Some(at) = last(sources, |f| quic(f).and_then(get)) else {
            return Ok(default);
        };
        let bytes = at.value().bytes().map_err(|e| at.error(&key(name), e))?;
        if !(1024..=MAX_QUIC_WINDOW).contains(&bytes) {
            return Err(at.error(
                &key(name),
                format_args!("must be between 1KiB and {MAX_QUIC_WINDOW} bytes"),
            ));
        }
        Ok(bytes)
    };
    let stream_window = window("stream_window", d.stream_window, |q| {
        q.stream_window.as_ref()
    })?;
    let connection_window = window("connection_window", d.connection_window, |q| {
        q.connection_window.as_ref()
    })?;
    let send_window = window("send_window", d.send_window, |q| q.send_window.as_ref())?;
    let qlog_dir = match last(sources, |f| quic(f).and_then(|q| q.qlog_dir.as_ref())) {
        None => None,
        Some(at) => Some(qlog_dir(&at, base)?),
    };
    let congestion = match last(sources, |f| quic(f).and_then(|q| q.congestion.as_ref())) {
        None => d.congestion,
        Some(at) => match at.value().as_str() {
            "cubic" => Congestion::Cubic,
            "bbr" => Congestion::Bbr,
            "newreno" => Congestion::NewReno,
            other => {
                return Err(at.error(
                    &key("congestion"),
                    format_args!("{other:?}: expected \"cubic\", \"bbr\" or \"newreno\""),
                ));
            }
        },
    };
    Ok(QuicConfig {
        enabled,
        congestion,
        retry,
        max_connections,
        idle_timeout,
        max_streams_bidi,
        stream_window,
        connection_window,
        send_window,
        zero_rtt,
        qlog_dir,
    })
}

fn quic(file: &RawFile) -> Option<&RawQuic> {
    file.quic.as_ref()
}

fn flag<'a>(
    sources: &'a [Source],
    get: impl Fn(&'a RawQuic) -> Option<&'a Spanned<bool>>,
    default: bool,
) -> bool {
    last(sources, |f| quic(f).and_then(&get)).map_or(default, |at| *at.value())
}

/// The directory must exist (a qlog per connection is created in it at run time).
fn qlog_dir(at: &At<'_, String>, base: &Path) -> Result<PathBuf, ConfError> {
    let path = base.join(at.value());
    if !path.is_dir() {
        return Err(at.error(
            "quic.qlog_dir",
            format_args!("{} is not a directory", path.display()),
        ));
    }
    Ok(path)
}

/// An idle timeout such as `"30s"`, between 1 ms and 24 h.
pub fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    // RFC 9000 §18.2: the value is in milliseconds, a varint; 0 would mean "no timeout".
    if value < Duration::from_millis(1) || value > Duration::from_secs(24 * 3600) {
        return Err("must be between 1ms and 24h".to_owned());
    }
    Ok(value)
}

/// `"never"`, `"always"` or `"above N/s"` (N ≥ 1 new connections per second).
pub fn parse_retry(text: &str) -> Result<RetryPolicy, String> {
    let expected = "expected \"never\", \"always\" or \"above N/s\" (new connections per second)";
    match text.trim() {
        "never" => Ok(RetryPolicy::Never),
        "always" => Ok(RetryPolicy::Always),
        other => {
            let rate = other
                .strip_prefix("above")
                .and_then(|rest| rest.trim().strip_suffix("/s"))
                .ok_or_else(|| format!("{text:?}: {expected}"))?;
            match rate.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(RetryPolicy::AboveRate(n)),
                _ => Err(format!("{text:?}: the rate must be a whole number ≥ 1")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policies_parse() {
        assert_eq!(parse_retry("never"), Ok(RetryPolicy::Never));
        assert_eq!(parse_retry("always"), Ok(RetryPolicy::Always));
        assert_eq!(parse_retry("above 500/s"), Ok(RetryPolicy::AboveRate(500)));
        assert_eq!(parse_retry(" above 1/s "), Ok(RetryPolicy::AboveRate(1)));
        for bad in [
            "sometimes",
            "above 0/s",
            "above x/s",
            "above 5",
            "500/s",
            "",
        ] {
            assert!(parse_retry(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
