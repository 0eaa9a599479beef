//! Collapsed forwarding: concurrent misses for one key make one upstream request.
//!
//! The first request for a key becomes the *leader* and goes upstream; requests arriving while
//! it is in flight become *followers* and wait for what the leader publishes. A leader that
//! finishes, fails or is dropped (its client went away, a panic) always removes its flight, so
//! the next request for the key leads again. A follower waits at most the configured lock
//! timeout; after that, or when the leader vanished without publishing, it goes upstream itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The in-flight requests, by key. Cheap to clone.
pub struct Flights<T> {
    map: Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>,
}

impl<T> Clone for Flights<T> {
    fn clone(&self) -> Self {
        Flights {
            map: self.map.clone(),
        }
    }
}

impl<T> fmt::Debug for Flights<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flights")
            .field("in_flight", &self.lock().len())
            .finish()
    }
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            map: Arc::default(),
        }
    }
}

/// What [`Flights::join`] made of a request.
#[derive(Debug)]
pub enum Role<T> {
    /// Go upstream, then [`Leader::publish`].
    Leader(Leader<T>),
    /// Someone else is; [`Follower::wait`] for their result.
    Follower(Follower<T>),
}

/// The request that goes upstream for a key. Dropping it ends the flight without a result.
pub struct Leader<T> {
    key: String,
    tx: watch::Sender<Option<T>>,
    flights: Flights<T>,
}

impl<T> fmt::Debug for Leader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader").field("key", &self.key).finish()
    }
}

/// A request waiting for the leader of its key.
#[derive(Debug)]
pub struct Follower<T> {
    rx: watch::Receiver<Option<T>>,
}

impl<T> Flights<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<T>>>> {
        // Each critical section is one map operation: a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lead the flight for `key`, or follow the one in progress.
    pub fn join(&self, key: &str) -> Role<T> {
        let mut map = self.lock();
        if let Some(rx) = map.get(key) {
            return Role::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), rx);
        Role::Leader(Leader {
            key: key.to_owned(),
            tx,
            flights: self.clone(),
        })
    }

    /// Lead the flight for `key` only if none is in progress (background refreshes).
    pub fn lead(&self, key: &str) -> Option<Leader<T>> {
        match self.join(key) {
            Role::Leader(leader) => Some(leader),
            Role::Follower(_) => None,
        }
    }

    /// Keys in flight (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

impl<T> Leader<T> {
    /// Hand `value` to every follower and end the flight.
    pub fn publish(self, value: T) {
        // Remove first: a request arriving after this point leads a new flight (and will
        // usually find the stored response before it even gets here).
        self.flights.lock().remove(&self.key);
        // No followers is fine.
        let _ = self.tx.send(Some(value));
    }
}

impl<T> Drop for Leader<T> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        // Only remove our own flight (publish may have removed it and another leader taken
        // the key since).
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

impl<T: Clone> Follower<T> {
    /// The leader's result, or `None` when it did not publish within `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Option<T> {
        let waited = tokio::time::timeout(timeout, self.rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(value)) => value.clone(),
            // Timed out, or the leader was dropped without a result.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_value() {
        let flights: Flights<u32> = Flights::default();
        let Role::Leader(leader) = flights.join("k") else {
            panic!("first request must lead")
        };
        let Role::Follower(a) = flights.join("k") else {
            panic!("second request must follow")
        };
        let Role::Follower(b) = flights.join("k") else {
            panic!("third request must follow")
        };
        assert!(matches!(flights.join("other"), Role::Leader(_)));
        leader.publish(7);
        assert_eq!(a.wait(Duration::from_secs(5)).await, Some(7));
        assert_eq!(b.wait(Duration::from_secs(5)).await, Some(7));
        assert_eq!(flights.in_flight(), 0);
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers_and_the_key() {
        let flights: Flights<u32> = Flights::default();
        let leader = flights.lead("k").unwrap();
        assert!(flights.lead("k").is_none());
        let Role::Follower(f) = flights.join("k") else {
            panic!("must follow")
        };
        drop(leader);
        assert_eq!(f.wait(Duration::from_secs(5)).await, None);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn followers_give_up_after_the_timeout() {
        let flights: Flights<u32> = Flights::default();
        let _leader = flights.lead("k").unwrap();
        let Role::Follower(f) = flights.join("k") else {
            panic!("must follow")
        };
        assert_eq!(f.wait(Duration::from_millis(100)).await, None);
        assert_eq!(flights.in_flight(), 1);
    }
}
