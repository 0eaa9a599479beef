//! Who gets upload slots: a seed's round-robin choker, and the upload rate limit. Sans-IO.
//!
//! A seed has nothing to gain from tit-for-tat (BEP 3's choking is about reciprocation), so
//! slots go round-robin, as libtorrent's `round_robin` seed choking does: at most `max`
//! interested peers are unchoked; the others wait in arrival order; every `rotation` the peers
//! that have held a slot longest give it up to the longest-waiting ones, so nobody waits for
//! ever behind a fast peer. A peer that loses interest or leaves frees its slot at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A peer connection's identity for the choker (the session's own counter).
pub type PeerKey = u64;

/// Upload slots shared by every peer connection of the process.
#[derive(Debug)]
pub struct Choker {
    max: usize,
    rotation: Duration,
    /// Unchoked peers and since when.
    unchoked: HashMap<PeerKey, Instant>,
    /// Interested, choked peers, longest-waiting first.
    waiting: VecDeque<PeerKey>,
    next_rotation: Option<Instant>,
}

impl Choker {
    pub fn new(max: usize, rotation: Duration) -> Choker {
        Choker {
            max: max.max(1),
            rotation,
            unchoked: HashMap::new(),
            waiting: VecDeque::new(),
            next_rotation: None,
        }
    }

    /// Report whether `peer` is interested; returns whether it is unchoked now.
    ///
    /// Sessions call this whenever their peer's interest changes and periodically (a waiting
    /// peer learns of a freed slot at its next call).
    pub fn poll(&mut self, peer: PeerKey, interested: bool, now: Instant) -> bool {
        if !interested {
            self.remove(peer);
            self.fill(now);
            return false;
        }
        if !self.unchoked.contains_key(&peer) && !self.waiting.contains(&peer) {
            self.waiting.push_back(peer);
        }
        self.rotate(now);
        self.fill(now);
        self.unchoked.contains_key(&peer)
    }

    /// The peer's connection closed.
    pub fn remove(&mut self, peer: PeerKey) {
        self.unchoked.remove(&peer);
        self.waiting.retain(|p| *p != peer);
    }

    pub fn unchoked(&self) -> usize {
        self.unchoked.len()
    }

    fn fill(&mut self, now: Instant) {
        while self.unchoked.len() < self.max {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.unchoked.insert(next, now);
        }
    }

    /// Every `rotation`, the longest-unchoked peers make room for the waiting ones.
    fn rotate(&mut self, now: Instant) {
        let due = *self.next_rotation.get_or_insert(now + self.rotation);
        if now < due {
            return;
        }
        self.next_rotation = Some(now + self.rotation);
        let turns = self.waiting.len().min(self.unchoked.len());
        if turns == 0 {
            return;
        }
        let mut holders: Vec<(Instant, PeerKey)> =
            self.unchoked.iter().map(|(p, t)| (*t, *p)).collect();
        holders.sort_unstable();
        for (_, peer) in holders.into_iter().take(turns) {
            self.unchoked.remove(&peer);
            self.waiting.push_back(peer);
        }
    }
}

/// A token bucket: `rate` bytes per second with a burst of one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    rate: u64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimit {
    pub fn new(rate: u64) -> RateLimit {
        RateLimit {
            rate: rate.max(1),
            tokens: 0.0,
            last: None,
        }
    }

    /// Take `bytes`, or say how long to wait before asking again.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Result<(), Duration> {
        let burst = self.rate.max(bytes) as f64;
        let elapsed = self.last.map_or(Duration::from_secs(1), |last| {
            now.saturating_duration_since(last)
        });
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate as f64).min(burst);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            return Ok(());
        }
        let missing = bytes as f64 - self.tokens;
        Err(Duration::from_secs_f64(missing / self.rate as f64).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROTATION: Duration = Duration::from_secs(10);

    #[test]
    fn slots_are_capped_and_freed_in_arrival_order() {
        let t = Instant::now();
        let mut c = Choker::new(2, ROTATION);
        assert!(c.poll(1, true, t));
        assert!(c.poll(2, true, t));
        assert!(!c.poll(3, true, t));
        assert!(!c.poll(4, true, t));
        assert_eq!(c.unchoked(), 2);
        // Peer 1 leaves: the longest-waiting peer (3) gets the slot, not 4.
        c.remove(1);
        assert!(!c.poll(4, true, t));
        assert!(c.poll(3, true, t));
        // Losing interest frees a slot too.
        assert!(!c.poll(2, false, t));
        assert!(c.poll(4, true, t));
    }

    #[test]
    fn rotation_gives_waiting_peers_a_turn() {
        let t = Instant::now();
        let mut c = Choker::new(2, ROTATION);
        assert!(c.poll(1, true, t));
        assert!(c.poll(2, true, t + Duration::from_secs(1)));
        assert!(!c.poll(3, true, t + Duration::from_secs(2)));
        let later = t + ROTATION;
        // Peer 1 held its slot longest and yields it to 3; 2 keeps its slot.
        assert!(c.poll(3, true, later));
        assert!(!c.poll(1, true, later));
        assert!(c.poll(2, true, later));
        // Next round: 2 yields to 1.
        let again = later + ROTATION;
        assert!(c.poll(1, true, again));
        assert!(!c.poll(2, true, again));
        assert!(c.poll(3, true, again));
    }

    #[test]
    fn no_rotation_without_waiters() {
        let t = Instant::now();
        let mut c = Choker::new(2, ROTATION);
        assert!(c.poll(1, true, t));
        assert!(c.poll(1, true, t + ROTATION * 3));
    }

    #[test]
    fn rate_limit_paces_to_the_rate() {
        let t = Instant::now();
        let mut r = RateLimit::new(100_000);
        // A full bucket to start with: one second's worth.
        assert_eq!(r.take(60_000, t), Ok(()));
        let wait = r.take(60_000, t).unwrap_err();
        assert!(wait > Duration::from_millis(150) && wait < Duration::from_millis(250));
        assert_eq!(r.take(60_000, t + wait), Ok(()));
        // Over ten simulated seconds, no more than rate × time + burst goes out.
        let mut now = t + wait;
        let mut sent = 0u64;
        while now < t + Duration::from_secs(10) {
            match r.take(16_384, now) {
                Ok(()) => sent += 16_384,
                Err(w) => now += w,
            }
        }
        assert!(sent <= 1_000_000 + 100_000, "{sent}");
        assert!(sent >= 800_000, "{sent}");
    }
}
