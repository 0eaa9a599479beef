//! The built-in tracker, sans-IO: announce (BEP 3, compact peers BEP 23, IPv6 `peers6` BEP 7)
//! and scrape (BEP 48), for the info-hashes this server seeds.
//!
//! [`Tracker`] holds the swarms and takes the time as a parameter; the HTTP side parses a query
//! with [`parse_announce`] / [`parse_scrape`], checks the info-hash is ours, and bencodes the
//! answer with [`encode_announce`], [`encode_scrape`] or [`encode_failure`].
//!
//! Every answer lists this server itself as a seed, then a bounded random sample of the other
//! peers, so downloaders also trade among themselves. A peer that has not announced for two
//! intervals (plus a grace) is forgotten. The peer's address is the address it connected from;
//! the `ip` parameter is ignored (it would let anyone point a swarm at a third party).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use librqbit_buffers::ByteBufOwned;
use librqbit_core::Id20;
use percent_encoding::percent_decode;
use serde::Serialize;

/// Most peers a client may ask for with `numwant`.
pub const MAX_NUMWANT: usize = 200;
/// Most info-hashes in one scrape.
pub const MAX_SCRAPE: usize = 64;

/// BEP 3 `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A regular re-announce (absent or empty `event`).
    None,
    Started,
    Completed,
    Stopped,
}

/// A parsed announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: Id20,
    pub peer_id: Id20,
    /// The address it connected from, with the port it announced.
    pub addr: SocketAddr,
    pub left: u64,
    pub event: Event,
    pub numwant: usize,
    pub compact: bool,
    pub no_peer_id: bool,
}

/// Parse the query of `GET /announce?...` from a client at `remote`.
pub fn parse_announce(
    query: &str,
    remote: IpAddr,
    default_numwant: usize,
) -> Result<Announce, &'static str> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut left = None;
    let mut event = Event::None;
    let mut numwant = default_numwant;
    // BEP 23: clients that want compact answers say so; most send compact=1. We answer
    // compact unless the client explicitly asks for the dictionary model.
    let mut compact = true;
    let mut no_peer_id = false;
    for (key, value) in pairs(query) {
        match key.as_slice() {
            b"info_hash" => info_hash = Some(id20(&value).ok_or("info_hash must be 20 bytes")?),
            b"peer_id" => peer_id = Some(id20(&value).ok_or("peer_id must be 20 bytes")?),
            b"port" => {
                port = Some(
                    number(&value)
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p != 0)
                        .ok_or("invalid port")?,
                );
            }
            b"left" => left = Some(number(&value).ok_or("invalid left")?),
            b"numwant" => {
                numwant = number(&value).map_or(default_numwant, |n| (n as usize).min(MAX_NUMWANT));
            }
            b"compact" => compact = value.as_slice() != b"0",
            b"no_peer_id" => no_peer_id = value.as_slice() == b"1",
            b"event" => {
                event = match value.as_slice() {
                    b"" | b"empty" => Event::None,
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    _ => return Err("unknown event"),
                }
            }
            _ => {}
        }
    }
    Ok(Announce {
        info_hash: info_hash.ok_or("missing info_hash")?,
        peer_id: peer_id.ok_or("missing peer_id")?,
        addr: SocketAddr::new(remote, port.ok_or("missing port")?),
        left: left.ok_or("missing left")?,
        event,
        numwant,
        compact,
        no_peer_id,
    })
}

/// The info-hashes of `GET /scrape?info_hash=...&info_hash=...` (BEP 48).
pub fn parse_scrape(query: &str) -> Result<Vec<Id20>, &'static str> {
    let mut hashes = Vec::new();
    for (key, value) in pairs(query) {
        if key == b"info_hash" {
            if hashes.len() == MAX_SCRAPE {
                return Err("too many info_hash parameters");
            }
            hashes.push(id20(&value).ok_or("info_hash must be 20 bytes")?);
        }
    }
    Ok(hashes)
}

fn pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| -> Vec<u8> {
            // `+` is a space in form encoding; info-hashes never contain a literal `+` (it is
            // sent as %2B), so treating it as a space is what clients expect.
            let s = s.replace('+', " ");
            percent_decode(s.as_bytes()).collect()
        };
        (decode(k), decode(v))
    })
}

fn id20(bytes: &[u8]) -> Option<Id20> {
    bytes.try_into().ok().map(Id20::new)
}

fn number(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[derive(Debug, Clone, Copy)]
struct PeerEntry {
    addr: SocketAddr,
    seed: bool,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<Id20, PeerEntry>,
    /// `completed` events seen (BEP 48 `downloaded`).
    downloaded: u64,
}

impl Swarm {
    fn counts(&self) -> (u64, u64) {
        let seeds = self.peers.values().filter(|p| p.seed).count() as u64;
        // This server is always a complete copy.
        (seeds + 1, self.peers.len() as u64 - seeds)
    }
}

/// A peer in an answer: its id (non-compact answers carry it) and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncedPeer {
    pub peer_id: Option<Id20>,
    pub addr: SocketAddr,
}

/// What an announce is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceReply {
    pub interval: Duration,
    pub complete: u64,
    pub incomplete: u64,
    /// This server first (when its address is known), then the sample.
    pub peers: Vec<AnnouncedPeer>,
}

/// BEP 48 counts for one info-hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeStats {
    pub complete: u64,
    pub downloaded: u64,
    pub incomplete: u64,
}

/// The swarms of every info-hash announced to us.
#[derive(Debug)]
pub struct Tracker {
    interval: Duration,
    swarms: HashMap<Id20, Swarm>,
    next_expiry: Option<Instant>,
}

impl Tracker {
    pub fn new(interval: Duration) -> Tracker {
        Tracker {
            interval,
            swarms: HashMap::new(),
            next_expiry: None,
        }
    }

    /// How long a silent peer stays listed: two intervals and a grace of a quarter interval.
    pub fn peer_lifetime(&self) -> Duration {
        self.interval * 2 + self.interval / 4
    }

    /// Record `a` and answer it. `this_server` is our own peer-wire address as the client
    /// reached it; `rng` picks the sample.
    pub fn announce(
        &mut self,
        a: &Announce,
        this_server: Option<SocketAddr>,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> AnnounceReply {
        self.expire(now);
        let swarm = self.swarms.entry(a.info_hash).or_default();
        match a.event {
            Event::Stopped => {
                swarm.peers.remove(&a.peer_id);
            }
            event => {
                let previous = swarm.peers.insert(
                    a.peer_id,
                    PeerEntry {
                        addr: a.addr,
                        seed: a.left == 0,
                        last_seen: now,
                    },
                );
                // A completed event counts once per peer, also for clients that forget it
                // and just announce left=0 after having been a leecher.
                let was_leecher = previous.is_some_and(|p| !p.seed);
                if a.left == 0 && (event == Event::Completed || was_leecher) {
                    swarm.downloaded += 1;
                }
            }
        }
        let (complete, incomplete) = swarm.counts();
        let mut peers: Vec<AnnouncedPeer> = this_server
            .map(|addr| AnnouncedPeer {
                peer_id: None,
                addr,
            })
            .into_iter()
            .collect();
        if a.event != Event::Stopped {
            let others: Vec<AnnouncedPeer> = swarm
                .peers
                .iter()
                // A seed has nothing to gain from other seeds.
                .filter(|(id, p)| **id != a.peer_id && !(a.left == 0 && p.seed))
                .map(|(id, p)| AnnouncedPeer {
                    peer_id: Some(*id),
                    addr: p.addr,
                })
                .collect();
            let wanted = a.numwant.min(others.len());
            let mut sample = others;
            // Partial Fisher–Yates: a uniform sample of `wanted` peers.
            for i in 0..wanted {
                let j = rng.usize(i..sample.len());
                sample.swap(i, j);
            }
            sample.truncate(wanted);
            peers.extend(sample);
        }
        AnnounceReply {
            interval: self.interval,
            complete,
            incomplete,
            peers,
        }
    }

    /// BEP 48 statistics for each of `hashes` (an info-hash nobody announced has only us).
    pub fn scrape(&mut self, hashes: &[Id20], now: Instant) -> Vec<(Id20, ScrapeStats)> {
        self.expire(now);
        hashes
            .iter()
            .map(|h| {
                let stats = match self.swarms.get(h) {
                    Some(swarm) => {
                        let (complete, incomplete) = swarm.counts();
                        ScrapeStats {
                            complete,
                            downloaded: swarm.downloaded,
                            incomplete,
                        }
                    }
                    None => ScrapeStats {
                        complete: 1,
                        downloaded: 0,
                        incomplete: 0,
                    },
                };
                (*h, stats)
            })
            .collect()
    }

    /// Peers announced for `hash` (for logs and tests).
    pub fn peers(&self, hash: &Id20) -> usize {
        self.swarms.get(hash).map_or(0, |s| s.peers.len())
    }

    /// Forget silent peers, at most once a second of simulated time.
    fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_some_and(|t| now < t) {
            return;
        }
        self.next_expiry = Some(now + Duration::from_secs(1));
        let lifetime = self.peer_lifetime();
        self.swarms.retain(|_, swarm| {
            swarm
                .peers
                .retain(|_, p| now.saturating_duration_since(p.last_seen) < lifetime);
            !swarm.peers.is_empty() || swarm.downloaded > 0
        });
    }
}

#[derive(Serialize)]
struct DictPeer {
    ip: String,
    port: u16,
    #[serde(rename = "peer id", skip_serializing_if = "Option::is_none")]
    peer_id: Option<ByteBufOwned>,
}

#[derive(Serialize)]
struct AnnounceBody {
    interval: u64,
    #[serde(rename = "min interval")]
    min_interval: u64,
    complete: u64,
    incomplete: u64,
    peers: Peers,
    #[serde(skip_serializing_if = "Option::is_none")]
    peers6: Option<ByteBufOwned>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Peers {
    Compact(ByteBufOwned),
    Dicts(Vec<DictPeer>),
}

/// Bencode an announce answer: compact `peers` (BEP 23) and `peers6` (BEP 7), or the
/// dictionary model of BEP 3.
pub fn encode_announce(reply: &AnnounceReply, compact: bool, no_peer_id: bool) -> Vec<u8> {
    let peers = if compact {
        let mut v4 = Vec::new();
        for p in &reply.peers {
            if let SocketAddr::V4(a) = p.addr {
                v4.extend_from_slice(&a.ip().octets());
                v4.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        Peers::Compact(ByteBufOwned::from(v4))
    } else {
        Peers::Dicts(
            reply
                .peers
                .iter()
                .map(|p| DictPeer {
                    ip: p.addr.ip().to_string(),
                    port: p.addr.port(),
                    peer_id: p
                        .peer_id
                        .filter(|_| !no_peer_id)
                        .map(|id| ByteBufOwned::from(id.0.to_vec())),
                })
                .collect(),
        )
    };
    let peers6 = compact.then(|| {
        let mut v6 = Vec::new();
        for p in &reply.peers {
            if let SocketAddr::V6(a) = p.addr {
                v6.extend_from_slice(&a.ip().octets());
                v6.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        ByteBufOwned::from(v6)
    });
    let body = AnnounceBody {
        interval: reply.interval.as_secs(),
        min_interval: (reply.interval.as_secs() / 2).max(1),
        complete: reply.complete,
        incomplete: reply.incomplete,
        peers,
        peers6,
    };
    bencode(&body)
}

#[derive(Serialize)]
struct ScrapeBody {
    files: BTreeMap<ByteBufOwned, ScrapeFile>,
}

#[derive(Serialize)]
struct ScrapeFile {
    complete: u64,
    downloaded: u64,
    incomplete: u64,
}

/// Bencode a scrape answer (BEP 48): `files` keyed by the raw 20-byte info-hash.
pub fn encode_scrape(stats: &[(Id20, ScrapeStats)]) -> Vec<u8> {
    let files = stats
        .iter()
        .map(|(h, s)| {
            (
                ByteBufOwned::from(h.0.to_vec()),
                ScrapeFile {
                    complete: s.complete,
                    downloaded: s.downloaded,
                    incomplete: s.incomplete,
                },
            )
        })
        .collect();
    bencode(&ScrapeBody { files })
}

/// BEP 3: "If a tracker response has a key `failure reason`, then that maps to a human
/// readable string which explains why the query failed, and no other keys are required."
pub fn encode_failure(reason: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Failure<'a> {
        #[serde(rename = "failure reason")]
        reason: &'a str,
    }
    bencode(&Failure { reason })
}

fn bencode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = librqbit_bencode::bencode_serialize_to_writer(value, &mut out) {
        unreachable!("bencoding a tracker answer into memory failed: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: [u8; 20] = [0xab; 20];

    fn query(peer: u8, port: u16, left: u64, event: &str) -> String {
        let hash: String = HASH.iter().map(|b| format!("%{b:02X}")).collect();
        format!(
            "info_hash={hash}&peer_id=-XX0001-{peer:012}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1&event={event}"
        )
    }

    fn announce(t: &mut Tracker, peer: u8, left: u64, event: &str, now: Instant) -> AnnounceReply {
        let ip: IpAddr = format!("127.0.0.{peer}").parse().unwrap();
        let a = parse_announce(&query(peer, 6881, left, event), ip, 50).unwrap();
        let me: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        t.announce(&a, Some(me), now, &mut fastrand::Rng::with_seed(1))
    }

    #[test]
    fn parses_binary_info_hash_and_refuses_garbage() {
        let a =
            parse_announce(&query(3, 51413, 10, "started"), "::1".parse().unwrap(), 50).unwrap();
        assert_eq!(a.info_hash, Id20::new(HASH));
        assert_eq!(a.addr, "[::1]:51413".parse().unwrap());
        assert_eq!((a.left, a.event, a.compact), (10, Event::Started, true));
        let ip = "127.0.0.1".parse().unwrap();
        assert_eq!(
            parse_announce("info_hash=abc&peer_id=x", ip, 50),
            Err("info_hash must be 20 bytes")
        );
        assert_eq!(
            parse_announce(&query(1, 0, 0, ""), ip, 50),
            Err("invalid port")
        );
        assert_eq!(
            parse_announce(&query(1, 1, 0, "bogus"), ip, 50),
            Err("unknown event")
        );
        assert_eq!(
            parse_scrape(&query(1, 1, 0, "")).unwrap(),
            vec![Id20::new(HASH)]
        );
    }

    #[test]
    fn answers_list_this_server_first_then_other_peers() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_secs(60));
        let first = announce(&mut t, 2, 100, "started", t0);
        assert_eq!(first.peers.len(), 1, "only this server so far");
        assert_eq!((first.complete, first.incomplete), (1, 1));
        let second = announce(&mut t, 3, 100, "started", t0);
        assert_eq!(second.peers[0].addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(second.peers[1].addr, "127.0.0.2:6881".parse().unwrap());
        assert_eq!((second.complete, second.incomplete), (1, 2));
        // Peer 2 completes: counted once as downloaded, now a seed.
        let done = announce(&mut t, 2, 0, "completed", t0);
        assert_eq!((done.complete, done.incomplete), (2, 1));
        announce(&mut t, 2, 0, "", t0);
        let stats = t.scrape(&[Id20::new(HASH)], t0);
        assert_eq!(
            stats[0].1,
            ScrapeStats {
                complete: 2,
                downloaded: 1,
                incomplete: 1
            }
        );
        // A seed is not sent other seeds.
        let seed_view = announce(&mut t, 2, 0, "", t0);
        assert_eq!(seed_view.peers.len(), 2);
        // Stopped removes the peer.
        let stopped = announce(&mut t, 3, 100, "stopped", t0);
        assert_eq!((stopped.complete, stopped.incomplete), (2, 0));
        assert_eq!(t.peers(&Id20::new(HASH)), 1);
    }

    #[test]
    fn silent_peers_expire_after_missed_intervals() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_secs(60));
        announce(&mut t, 2, 100, "started", t0);
        announce(&mut t, 3, 100, "started", t0 + Duration::from_secs(100));
        // Peer 2 last announced 135 s ago (= 2.25 intervals): gone; peer 3 stays.
        let later = t0 + Duration::from_secs(135);
        let stats = t.scrape(&[Id20::new(HASH)], later);
        assert_eq!(stats[0].1.incomplete, 1);
        assert_eq!(t.peers(&Id20::new(HASH)), 1);
    }

    #[test]
    fn sample_is_bounded_by_numwant() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_secs(60));
        for peer in 2..60 {
            announce(&mut t, peer, 100, "started", t0);
        }
        let ip: IpAddr = "127.0.0.99".parse().unwrap();
        let q = format!("{}&numwant=10", query(99, 1, 5, ""));
        let a = parse_announce(&q, ip, 50).unwrap();
        let reply = t.announce(&a, None, t0, &mut fastrand::Rng::with_seed(7));
        assert_eq!(reply.peers.len(), 10);
        let mut addrs: Vec<_> = reply.peers.iter().map(|p| p.addr).collect();
        addrs.dedup();
        assert_eq!(addrs.len(), 10);
    }

    #[test]
    fn encodings() {
        let reply = AnnounceReply {
            interval: Duration::from_secs(120),
            complete: 1,
            incomplete: 1,
            peers: vec![
                AnnouncedPeer {
                    peer_id: None,
                    addr: "127.0.0.1:8080".parse().unwrap(),
                },
                AnnouncedPeer {
                    peer_id: Some(Id20::new([b'p'; 20])),
                    addr: "[::1]:6881".parse().unwrap(),
                },
            ],
        };
        let mut expected = b"d8:completei1e10:incompletei1e8:intervali120e12:min intervali60e5:peers6:\x7f\x00\x00\x01\x1f\x906:peers618:".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1]);
        expected.push(b'e');
        assert_eq!(encode_announce(&reply, true, false), expected);
        let dicts = encode_announce(&reply, false, false);
        let needle = b"5:peersld2:ip9:127.0.0.14:porti8080eed2:ip3:::17:peer id20:pppppppppppppppppppp4:porti6881eee";
        assert!(
            dicts.windows(needle.len()).any(|w| w == needle),
            "{}",
            String::from_utf8_lossy(&dicts)
        );
        assert_eq!(
            encode_failure("unknown info_hash"),
            b"d14:failure reason17:unknown info_hashe"
        );
        let scrape = encode_scrape(&[(
            Id20::new([b'h'; 20]),
            ScrapeStats {
                complete: 2,
                downloaded: 1,
                incomplete: 3,
            },
        )]);
        assert_eq!(
            scrape,
            b"d5:filesd20:hhhhhhhhhhhhhhhhhhhhd8:completei2e10:downloadedi1e10:incompletei3eeee"
        );
    }
}
