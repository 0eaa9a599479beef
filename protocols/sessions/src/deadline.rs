//! Bounding a step in time without paying for a timer when the step is ready at once.
//!
//! Most steps of a busy connection are: a write the socket has room for, a TLS flush, a
//! request head already received, a cached answer. `tokio::time::timeout` reads the clock and
//! makes a timer entry every time, ready or not, so the step is polled once first and the
//! timer is armed (and its room allocated) only if it must wait.

use std::future::{Future, poll_fn};
use std::task::Poll;
use std::time::Duration;

use tokio::time::timeout;

/// `future`'s output, or `None` if it takes longer than `limit` (counted from its first
/// `Pending`).
pub(crate) async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
        return Some(output);
    }
    // Boxed: the timer makes a future several times the size of most steps, and keeping it
    // inline would make every future that waits on a step that large, ready or not.
    Box::pin(timeout(limit, future)).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ready_step_is_answered_and_a_stuck_one_times_out() {
        assert_eq!(within(Duration::from_secs(60), async { 7 }).await, Some(7));
        let never = std::future::pending::<()>();
        assert_eq!(within(Duration::from_millis(20), never).await, None);
        // A step that waits less than the limit still completes.
        let later = tokio::time::sleep(Duration::from_millis(5));
        assert_eq!(within(Duration::from_secs(60), later).await, Some(()));
    }
}
