//! Member selection: sans-IO, deterministic given its inputs (the random policy takes its
//! random numbers as an argument), unit-tested without sockets.
//!
//! A [`Balancer`] is built for one member list and keeps the little state a policy needs (the
//! round-robin cursor, smooth weighted round-robin's current weights, the hash ring). Each call
//! to [`Balancer::pick`] gets the members' live view ([`Candidate`]): whether each may take a
//! request now, and its in-flight count. Backup members are chosen only when no primary can.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_conf::Balance;

/// Ring points per unit of weight. A member's share of the ring is a sum of its arcs, whose
/// relative spread is about 1/sqrt(points): ketama's 160 leaves a member owning 1.2/N of the
/// keys (and so moving that many when it goes) in about one ring of forty at N = 4; 512 makes
/// it a four-sigma event while the ring of a usual pool stays a few pages.
const POINTS_PER_WEIGHT: u64 = 512;
/// Above this many points (heavy weights on many members) every member's count is scaled down
/// alike, so the ring stays within 16 MiB.
const MAX_RING_POINTS: u64 = 1 << 20;

/// What the balancer needs to know of one member at the moment of choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub weight: u32,
    /// Requests in flight to the member (least_conn, random_two).
    pub active: usize,
    /// Healthy, not cooling down, not yet tried for this request, below its connection cap.
    pub available: bool,
    pub backup: bool,
}

#[derive(Debug)]
pub struct Balancer {
    policy: Balance,
    cursor: AtomicUsize,
    /// Smooth weighted round-robin (nginx): one current weight per member.
    current: Mutex<Vec<i64>>,
    /// Sorted (point, member) pairs: ip_hash and consistent_hash.
    ring: Vec<(u64, usize)>,
}

impl Balancer {
    /// `ids` name the members stably (their address): a member keeps its ring points whatever
    /// its position, so adding or removing one moves only its share of the keys.
    pub fn new(policy: Balance, ids: &[String], weights: &[u32]) -> Balancer {
        let ring = if matches!(policy, Balance::IpHash | Balance::ConsistentHash) {
            let total: u64 = weights
                .iter()
                .map(|w| POINTS_PER_WEIGHT * u64::from((*w).max(1)))
                .sum();
            let scale = |points: u64| {
                if total <= MAX_RING_POINTS {
                    points
                } else {
                    (points * MAX_RING_POINTS / total).max(1)
                }
            };
            let mut ring = Vec::new();
            for (i, (id, w)) in ids.iter().zip(weights).enumerate() {
                for p in 0..scale(POINTS_PER_WEIGHT * u64::from((*w).max(1))) {
                    ring.push((hash_bytes(format!("{id}#{p}").as_bytes()), i));
                }
            }
            ring.sort_unstable();
            ring
        } else {
            Vec::new()
        };
        Balancer {
            policy,
            cursor: AtomicUsize::new(0),
            current: Mutex::new(vec![0; ids.len()]),
            ring,
        }
    }

    pub fn policy(&self) -> Balance {
        self.policy
    }

    /// The member to try, or `None` when no candidate is available. `key` is the hash of the
    /// client address (ip_hash) or of the configured key (consistent_hash); `random` two random
    /// numbers (random_two).
    pub fn pick(&self, members: &[Candidate], key: u64, random: [u64; 2]) -> Option<usize> {
        let primary = |i: usize| members[i].available && !members[i].backup;
        let backup = |i: usize| members[i].available && members[i].backup;
        self.pick_among(members, key, random, &primary)
            .or_else(|| self.pick_among(members, key, random, &backup))
    }

    fn pick_among(
        &self,
        members: &[Candidate],
        key: u64,
        random: [u64; 2],
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        if n == 0 || !(0..n).any(eligible) {
            return None;
        }
        match self.policy {
            Balance::RoundRobin => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
            }
            Balance::Weighted => {
                let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
                current.resize(n, 0);
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in (0..n).filter(|&i| eligible(i)) {
                    let w = i64::from(members[i].weight.max(1));
                    current[i] += w;
                    total += w;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let best = best?;
                current[best] -= total;
                Some(best)
            }
            Balance::LeastConn => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<usize> = None;
                for i in (0..n).map(|k| (start + k) % n).filter(|&i| eligible(i)) {
                    let better = match best {
                        None => true,
                        // active_i / w_i < active_b / w_b, without division.
                        Some(b) => {
                            (members[i].active as u128) * u128::from(members[b].weight.max(1))
                                < (members[b].active as u128) * u128::from(members[i].weight.max(1))
                        }
                    };
                    if better {
                        best = Some(i);
                    }
                }
                best
            }
            Balance::IpHash | Balance::ConsistentHash => {
                let start = self.ring.partition_point(|(point, _)| *point < key);
                let len = self.ring.len();
                (0..len)
                    .map(|k| self.ring[(start + k) % len].1)
                    .find(|&i| eligible(i))
            }
            Balance::RandomTwo => {
                let eligible_list: Vec<usize> = (0..n).filter(|&i| eligible(i)).collect();
                let m = eligible_list.len();
                let pos_a = (random[0] % m as u64) as usize;
                let a = eligible_list[pos_a];
                if m == 1 {
                    return Some(a);
                }
                // A second, different member.
                let mut pos_b = (random[1] % (m as u64 - 1)) as usize;
                if pos_b >= pos_a {
                    pos_b += 1;
                }
                let b = eligible_list[pos_b];
                let load = |i: usize| {
                    (members[i].active as u128 * 1000) / u128::from(members[i].weight.max(1))
                };
                Some(if load(b) < load(a) { b } else { a })
            }
        }
    }
}

/// A stable 64-bit hash (FNV-1a, then a finaliser to spread the bits): ring points and keys
/// must land in the same place in every process and across restarts.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A small, fast, non-cryptographic generator (xorshift64*), one per thread.
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9_7f4a_7c15);
            let addr = &t as *const u64 as u64;
            hash_bytes(&(t ^ addr).to_le_bytes()) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn up(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .map(|&weight| Candidate {
                weight,
                active: 0,
                available: true,
                backup: false,
            })
            .collect()
    }

    fn counts(b: &Balancer, members: &[Candidate], rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; members.len()];
        for i in 0..rounds {
            let key = hash_bytes(&i.to_le_bytes());
            let r = [random_u64(), random_u64()];
            counts[b.pick(members, key, r).expect("a member")] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_even_and_skips_unavailable() {
        let b = Balancer::new(Balance::RoundRobin, &ids(3), &[1, 1, 1]);
        let mut members = up(&[1, 1, 1]);
        assert_eq!(counts(&b, &members, 300), vec![100, 100, 100]);
        members[1].available = false;
        assert_eq!(counts(&b, &members, 300)[1], 0);
    }

    #[test]
    fn weighted_follows_weights_smoothly() {
        let b = Balancer::new(Balance::Weighted, &ids(3), &[5, 1, 1]);
        let members = up(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7)
            .map(|_| b.pick(&members, 0, [0, 0]).expect("a member"))
            .collect();
        // nginx's smooth weighted round-robin: a a b a c a a.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(&b, &members, 700), vec![500, 100, 100]);
    }

    #[test]
    fn least_conn_prefers_the_idlest_by_weight() {
        let b = Balancer::new(Balance::LeastConn, &ids(3), &[1, 1, 2]);
        let mut members = up(&[1, 1, 2]);
        members[0].active = 5;
        members[1].active = 2;
        members[2].active = 5; // 2.5 per weight
        assert_eq!(b.pick(&members, 0, [0, 0]), Some(1));
        members[1].active = 3;
        assert_eq!(b.pick(&members, 0, [0, 0]), Some(2));
    }

    #[test]
    fn random_two_spreads_and_avoids_the_loaded_member() {
        let b = Balancer::new(Balance::RandomTwo, &ids(4), &[1, 1, 1, 1]);
        let mut members = up(&[1, 1, 1, 1]);
        let c = counts(&b, &members, 4000);
        assert!(c.iter().all(|&n| n > 700), "{c:?}");
        members[3].active = 100;
        let c = counts(&b, &members, 4000);
        // Member 3 wins only when both draws are itself, which cannot happen.
        assert_eq!(c[3], 0, "{c:?}");
    }

    #[test]
    fn backups_only_when_no_primary_is_available() {
        let b = Balancer::new(Balance::RoundRobin, &ids(3), &[1, 1, 1]);
        let mut members = up(&[1, 1, 1]);
        members[2].backup = true;
        assert_eq!(counts(&b, &members, 100)[2], 0);
        members[0].available = false;
        members[1].available = false;
        assert_eq!(b.pick(&members, 0, [0, 0]), Some(2));
        members[2].available = false;
        assert_eq!(b.pick(&members, 0, [0, 0]), None);
    }

    #[test]
    fn consistent_hash_spreads_and_moves_only_the_lost_members_keys() {
        for n in [3usize, 5, 10] {
            let b = Balancer::new(Balance::ConsistentHash, &ids(n), &vec![1; n]);
            let mut members = up(&vec![1; n]);
            let keys: Vec<u64> = (0..20_000u32)
                .map(|k| hash_bytes(format!("/object/{k}").as_bytes()))
                .collect();
            let before: Vec<usize> = keys
                .iter()
                .map(|&k| b.pick(&members, k, [0, 0]).expect("a member"))
                .collect();
            let mut per = vec![0usize; n];
            for &m in &before {
                per[m] += 1;
            }
            let fair = keys.len() / n;
            assert!(
                per.iter().all(|&c| c > fair * 7 / 10 && c < fair * 13 / 10),
                "uneven spread over {n}: {per:?}"
            );
            members[n / 2].available = false;
            let moved = keys
                .iter()
                .zip(&before)
                .filter(|(k, was)| b.pick(&members, **k, [0, 0]) != Some(**was))
                .inspect(|(_, was)| assert_eq!(**was, n / 2, "a key of a live member moved"))
                .count();
            assert!(
                moved as f64 <= 1.2 * keys.len() as f64 / n as f64,
                "{moved} of {} keys moved with {n} members",
                keys.len()
            );
        }
    }

    /// The exact share of the hash space each member owns (arc lengths, no sampling).
    fn shares(b: &Balancer, n: usize) -> Vec<f64> {
        let mut owned = vec![0u128; n];
        let ring = &b.ring;
        for (j, &(point, member)) in ring.iter().enumerate() {
            // A key maps to the first point at or after it: the arc ending at `point`.
            let prev = if j == 0 {
                ring[ring.len() - 1].0
            } else {
                ring[j - 1].0
            };
            owned[member] += u128::from(point.wrapping_sub(prev));
        }
        owned.iter().map(|&o| o as f64 / 2f64.powi(64)).collect()
    }

    #[test]
    fn no_member_owns_more_than_1_2_over_n_of_the_ring() {
        // Pools as tests and operators make them: loopback addresses with arbitrary ports.
        for n in [2usize, 4, 8] {
            for pool in 0..200u32 {
                let ids: Vec<String> = (0..n as u32)
                    .map(|i| format!("127.0.0.1:{}", 20_000 + pool * 97 + i * 7919 % 30_011))
                    .collect();
                let b = Balancer::new(Balance::ConsistentHash, &ids, &vec![1; n]);
                let worst = shares(&b, n).into_iter().fold(0.0, f64::max);
                assert!(
                    worst <= 1.2 / n as f64,
                    "pool {ids:?}: a member owns {worst:.3} of the ring"
                );
            }
        }
    }

    #[test]
    fn ring_points_do_not_depend_on_member_order() {
        let a = Balancer::new(Balance::ConsistentHash, &ids(4), &[1; 4]);
        let mut rev = ids(4);
        rev.reverse();
        let b = Balancer::new(Balance::ConsistentHash, &rev, &[1; 4]);
        let members = up(&[1; 4]);
        for k in 0..1000u32 {
            let key = hash_bytes(&k.to_le_bytes());
            let ia = a.pick(&members, key, [0, 0]).expect("a member");
            let ib = b.pick(&members, key, [0, 0]).expect("a member");
            assert_eq!(ia, 3 - ib);
        }
    }
}
