//! The `Date` header value, formatted at most once per second per thread.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

use rustix::time::ClockId;

thread_local! {
    static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Run `f` with the current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes).
///
/// The second is read from the coarse realtime clock, which the kernel updates every tick and
/// the vDSO reads without touching the time-stamp counter: a Date is at most one tick late,
/// and every response but the first of each second skips the precise clock.
pub fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let secs = unix_secs();
    CACHED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = secs;
            }
        }
        f(&cached.1)
    })
}

/// Seconds since the Unix epoch, from the coarse realtime clock (see [`with_http_date`]).
pub(crate) fn unix_secs() -> u64 {
    u64::try_from(rustix::time::clock_gettime(ClockId::RealtimeCoarse).tv_sec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_an_imf_fixdate() {
        let date = with_http_date(|d| String::from_utf8_lossy(d).into_owned());
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
        assert!(date.ends_with(" GMT"));
    }
}
