//! The seeding side of one BitTorrent peer-wire connection, sans-IO (BEP 3, BEP 10, BEP 9).
//!
//! The driver (a session actor) owns the socket. It reads the 68-byte handshake, looks the
//! info-hash up, answers with its own handshake and creates a [`PeerWire`]. From then on:
//!
//! 1. every length prefix read goes through [`PeerWire::check_length`] *before* the body is
//!    awaited (a peer cannot make us buffer a 4 GiB "message");
//! 2. every decoded message goes to [`PeerWire::handle_message`];
//! 3. the choke decision of the shared choker (the torrent service's) goes to
//!    [`PeerWire::set_choked`] whenever [`PeerWire::interested`] may have changed it;
//! 4. [`PeerWire::poll_transmit`] yields what to write, in order, until `None`;
//! 5. at [`PeerWire::poll_timeout`], [`PeerWire::handle_timeout`] sends keep-alives and ends
//!    idle peers.
//!
//! Any `Err(Violation)` ends this connection only; the violation says why, for the log.
//!
//! ```text
//!   handshake ──► ext handshake (BEP 10, if the peer set bit 20) + Bitfield (all pieces)
//!   peer: Interested ──► choker grants a slot ──► Unchoke ──► Request* ──► Piece*
//!                         choker rotates the slot away ──► Choke (queued requests dropped)
//! ```
//!
//! We are a seed: we never request, so a `Piece` from the peer is a violation, and we send no
//! `Have`. BEP 6 (fast extension) is not offered: the codec does not speak it.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use librqbit_peer_protocol::Message;
use librqbit_peer_protocol::extended::ExtendedMessage;
use librqbit_peer_protocol::extended::ut_metadata::UtMetadata;

/// BEP 3: "All current implementations use 2^14 (16 kiB), and close connections which request
/// an amount greater than that."
pub const MAX_BLOCK: u32 = 16 * 1024;
/// BEP 9: metadata is sent in 16 KiB pieces (the last may be shorter).
pub const METADATA_PIECE: u32 = 16 * 1024;
/// Send a keep-alive after this much silence on our side (BEP 3 suggests two minutes as the
/// usual timeout; we speak well within it).
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// Pending ut_metadata answers a peer may ask for before it is a flood.
const MAX_METADATA_REQUESTS: usize = 32;
/// Extended and other control messages never need more than this.
const MAX_CONTROL_MESSAGE: u32 = 64 * 1024;

/// What we seed, as the session needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorrentShape {
    pub piece_length: u32,
    pub total_length: u64,
    /// Length of the bencoded info dictionary (served over ut_metadata).
    pub metadata_length: u32,
}

impl TorrentShape {
    pub fn pieces(&self) -> u32 {
        self.total_length.div_ceil(u64::from(self.piece_length)) as u32
    }

    /// Length of piece `index`, or `None` past the end.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        let start = u64::from(index) * u64::from(self.piece_length);
        if start >= self.total_length {
            return None;
        }
        Some((self.total_length - start).min(u64::from(self.piece_length)) as u32)
    }

    /// The bitfield of a seed: every piece, spare bits of the last byte cleared (BEP 3: "Spare
    /// bits at the end are set to zero").
    pub fn full_bitfield(&self) -> Vec<u8> {
        let pieces = self.pieces() as usize;
        let mut bits = vec![0xff; pieces.div_ceil(8)];
        let spare = bits.len() * 8 - pieces;
        if let Some(last) = bits.last_mut() {
            *last = 0xffu8.checked_shl(spare as u32).unwrap_or(0);
        }
        bits
    }

    fn metadata_pieces(&self) -> u32 {
        self.metadata_length.div_ceil(METADATA_PIECE)
    }
}

/// Limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Outstanding block requests; more is a flood (we advertise it as `reqq`).
    pub request_queue: usize,
    /// No message for this long ends the connection.
    pub idle_timeout: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            request_queue: 2000,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// A block the peer asked for: `length` bytes of piece `index` from `begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

impl Block {
    /// Offset of the block in the torrent's content.
    pub fn offset(&self, shape: &TorrentShape) -> u64 {
        u64::from(self.index) * u64::from(shape.piece_length) + u64::from(self.begin)
    }
}

/// What to write next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// BEP 10 handshake: our `ut_metadata` id, `metadata_size`, `reqq`.
    ExtendedHandshake {
        metadata_size: u32,
        reqq: u32,
    },
    Bitfield(Vec<u8>),
    Choke,
    Unchoke,
    KeepAlive,
    /// A `piece` message carrying this block (read it from the file at [`Block::offset`]).
    Block(Block),
    /// BEP 9 `data` for metadata piece `piece`, sent with the peer's `ut_metadata` id.
    MetadataData {
        id: u8,
        piece: u32,
    },
    /// BEP 9 `reject`.
    MetadataReject {
        id: u8,
        piece: u32,
    },
}

/// Why a connection ends. All but `Idle` are the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A length prefix larger than any message we accept.
    Oversized(u32),
    /// BEP 3: a request longer than 16 KiB.
    BlockTooLong(u32),
    /// A request or have past the last piece, or a block crossing its piece's end.
    OutOfRange { index: u32, begin: u32, length: u32 },
    /// More outstanding requests than we allow (or than we tolerate while choked).
    RequestFlood,
    /// More pending metadata requests than we answer.
    MetadataFlood,
    /// A bitfield of the wrong length.
    BadBitfield,
    /// A `piece` we never asked for.
    UnsolicitedPiece,
    /// Silent past the idle timeout.
    Idle,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Oversized(n) => write!(f, "message of {n} bytes is too large"),
            Violation::BlockTooLong(n) => write!(f, "request of {n} bytes exceeds 16 KiB"),
            Violation::OutOfRange {
                index,
                begin,
                length,
            } => write!(f, "request {index}:{begin}+{length} is outside the torrent"),
            Violation::RequestFlood => f.write_str("request queue overflow"),
            Violation::MetadataFlood => f.write_str("too many metadata requests"),
            Violation::BadBitfield => f.write_str("bitfield of the wrong length"),
            Violation::UnsolicitedPiece => f.write_str("piece we never requested"),
            Violation::Idle => f.write_str("idle timeout"),
        }
    }
}

/// One peer connection of a seed. See the module documentation for the calling order.
#[derive(Debug)]
pub struct PeerWire {
    shape: TorrentShape,
    limits: PeerLimits,
    /// We choke the peer (BEP 3: connections start choked).
    choking: bool,
    /// The peer wants our pieces.
    interested: bool,
    /// Requests to answer, oldest first.
    requests: VecDeque<Block>,
    /// Requests received while choked since the last choke (a few are in flight legitimately).
    while_choked: usize,
    /// Control messages to send before any block.
    control: VecDeque<Transmit>,
    /// Metadata answers to send before any block (they are small and unblock a magnet).
    metadata: VecDeque<Transmit>,
    /// The peer's id for `ut_metadata` (from its BEP 10 handshake).
    peer_ut_metadata: Option<u8>,
    last_received: Instant,
    last_sent: Instant,
}

impl PeerWire {
    /// After both handshakes: queue our BEP 10 handshake (if the peer speaks it) and a bitfield.
    pub fn new(
        shape: TorrentShape,
        limits: PeerLimits,
        peer_extended: bool,
        now: Instant,
    ) -> PeerWire {
        let mut control = VecDeque::new();
        // BEP 10: the extension handshake "should be sent immediately after the standard
        // bittorrent handshake to any peer that supports this extension".
        if peer_extended {
            control.push_back(Transmit::ExtendedHandshake {
                metadata_size: shape.metadata_length,
                reqq: limits.request_queue.try_into().unwrap_or(u32::MAX),
            });
        }
        // BEP 3: "'bitfield' is only ever sent as the first message" (after extension
        // handshakes). A seed without BEP 6 HaveAll sends every bit set.
        if shape.pieces() > 0 {
            control.push_back(Transmit::Bitfield(shape.full_bitfield()));
        }
        PeerWire {
            shape,
            limits,
            choking: true,
            interested: false,
            requests: VecDeque::new(),
            while_choked: 0,
            control,
            metadata: VecDeque::new(),
            peer_ut_metadata: None,
            last_received: now,
            last_sent: now,
        }
    }

    pub fn shape(&self) -> &TorrentShape {
        &self.shape
    }

    /// The peer is interested (and so wants an unchoke slot).
    pub fn interested(&self) -> bool {
        self.interested
    }

    pub fn choking(&self) -> bool {
        self.choking
    }

    /// Blocks queued for sending.
    pub fn queued_blocks(&self) -> usize {
        self.requests.len()
    }

    /// The largest message body (after the 4-byte length prefix) we accept right now.
    pub fn max_message_len(&self) -> u32 {
        let bitfield = 1 + self.shape.pieces().div_ceil(8);
        // A piece message (never legitimate, but sized to be rejected as unsolicited rather
        // than oversized) and extended messages fit in MAX_CONTROL_MESSAGE.
        bitfield.max(MAX_CONTROL_MESSAGE)
    }

    /// Check a length prefix before reading the body.
    pub fn check_length(&self, len: u32) -> Result<(), Violation> {
        if len > self.max_message_len() {
            return Err(Violation::Oversized(len));
        }
        Ok(())
    }

    /// One decoded message from the peer.
    pub fn handle_message(&mut self, msg: &Message<'_>, now: Instant) -> Result<(), Violation> {
        self.last_received = now;
        match msg {
            Message::KeepAlive | Message::Choke | Message::Unchoke => {}
            Message::Interested => self.interested = true,
            Message::NotInterested => {
                self.interested = false;
            }
            Message::Have(index) => {
                if *index >= self.shape.pieces() {
                    return Err(Violation::OutOfRange {
                        index: *index,
                        begin: 0,
                        length: 0,
                    });
                }
            }
            Message::Bitfield(bits) => {
                // BEP 3 puts the bitfield first, but aria2 sends another one mid-connection;
                // to a seed it is harmless, so only a wrong length is refused.
                let expected = self.shape.pieces().div_ceil(8) as usize;
                if bits.as_ref().len() != expected {
                    return Err(Violation::BadBitfield);
                }
            }
            Message::Request(r) => self.request(
                Block {
                    index: r.index,
                    begin: r.begin,
                    length: r.length,
                },
                now,
            )?,
            Message::Cancel(r) => {
                let block = Block {
                    index: r.index,
                    begin: r.begin,
                    length: r.length,
                };
                self.requests.retain(|b| *b != block);
            }
            Message::Piece(_) => return Err(Violation::UnsolicitedPiece),
            Message::Extended(ext) => self.extended(ext)?,
        }
        Ok(())
    }

    fn request(&mut self, block: Block, _now: Instant) -> Result<(), Violation> {
        // BEP 3: "close connections which request an amount greater than" 16 KiB.
        if block.length > MAX_BLOCK {
            return Err(Violation::BlockTooLong(block.length));
        }
        let in_range = self.shape.piece_len(block.index).is_some_and(|piece| {
            block.length > 0 && u64::from(block.begin) + u64::from(block.length) <= u64::from(piece)
        });
        if !in_range {
            return Err(Violation::OutOfRange {
                index: block.index,
                begin: block.begin,
                length: block.length,
            });
        }
        if self.choking {
            // BEP 3: when choked, "all pending requests are discarded"; requests sent before
            // the peer saw our choke are normal, an endless stream of them is not.
            self.while_choked += 1;
            if self.while_choked > self.limits.request_queue {
                return Err(Violation::RequestFlood);
            }
            return Ok(());
        }
        if self.requests.len() >= self.limits.request_queue {
            return Err(Violation::RequestFlood);
        }
        self.requests.push_back(block);
        Ok(())
    }

    fn extended(
        &mut self,
        ext: &ExtendedMessage<librqbit_buffers::ByteBuf<'_>>,
    ) -> Result<(), Violation> {
        match ext {
            ExtendedMessage::Handshake(hs) => {
                self.peer_ut_metadata = hs.m.ut_metadata.filter(|id| *id != 0);
            }
            // BEP 9: requests for metadata pieces; data and reject are answers we never asked.
            ExtendedMessage::UtMetadata(UtMetadata::Request(piece)) => {
                let Some(id) = self.peer_ut_metadata else {
                    return Ok(());
                };
                if self.metadata.len() >= MAX_METADATA_REQUESTS {
                    return Err(Violation::MetadataFlood);
                }
                let answer = if *piece < self.shape.metadata_pieces() {
                    Transmit::MetadataData { id, piece: *piece }
                } else {
                    Transmit::MetadataReject { id, piece: *piece }
                };
                self.metadata.push_back(answer);
            }
            ExtendedMessage::UtMetadata(_)
            | ExtendedMessage::UtPex(_)
            | ExtendedMessage::Dyn(..) => {}
        }
        Ok(())
    }

    /// The choker's decision for this peer.
    pub fn set_choked(&mut self, choked: bool) {
        if choked == self.choking {
            return;
        }
        self.choking = choked;
        if choked {
            // BEP 3: requests pending when a peer is choked are dropped.
            self.requests.clear();
            self.while_choked = 0;
            self.control.push_back(Transmit::Choke);
        } else {
            self.control.push_back(Transmit::Unchoke);
        }
    }

    /// The next thing to write. Control first, then metadata, then blocks in request order.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let next = self
            .control
            .pop_front()
            .or_else(|| self.metadata.pop_front())
            .or_else(|| {
                if self.choking {
                    None
                } else {
                    self.requests.pop_front().map(Transmit::Block)
                }
            })?;
        self.last_sent = now;
        Some(next)
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has something.
    pub fn has_transmit(&self) -> bool {
        !self.control.is_empty()
            || !self.metadata.is_empty()
            || (!self.choking && !self.requests.is_empty())
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        (self.last_sent + KEEPALIVE).min(self.last_received + self.limits.idle_timeout)
    }

    /// Queue a keep-alive after our silence; end the connection after the peer's.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Violation> {
        if now >= self.last_received + self.limits.idle_timeout {
            return Err(Violation::Idle);
        }
        if now >= self.last_sent + KEEPALIVE && !self.has_transmit() {
            self.control.push_back(Transmit::KeepAlive);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use librqbit_buffers::ByteBuf;
    use librqbit_peer_protocol::Request;
    use librqbit_peer_protocol::extended::PeerExtendedMessageIds;
    use librqbit_peer_protocol::extended::handshake::ExtendedHandshake;

    const SHAPE: TorrentShape = TorrentShape {
        piece_length: 32 * 1024,
        total_length: 100_000, // 4 pieces, the last of 1696 bytes
        metadata_length: 20_000,
    };

    fn wire(now: Instant) -> PeerWire {
        PeerWire::new(SHAPE, PeerLimits::default(), true, now)
    }

    fn drain(w: &mut PeerWire, now: Instant) -> Vec<Transmit> {
        std::iter::from_fn(|| w.poll_transmit(now)).collect()
    }

    fn req(index: u32, begin: u32, length: u32) -> Message<'static> {
        Message::Request(Request::new(index, begin, length))
    }

    #[test]
    fn opens_with_extension_handshake_and_full_bitfield() {
        let now = Instant::now();
        let mut w = wire(now);
        assert_eq!(
            drain(&mut w, now),
            vec![
                Transmit::ExtendedHandshake {
                    metadata_size: 20_000,
                    reqq: 2000
                },
                Transmit::Bitfield(vec![0b1111_0000]),
            ]
        );
        let mut plain = PeerWire::new(SHAPE, PeerLimits::default(), false, now);
        assert_eq!(drain(&mut plain, now), vec![Transmit::Bitfield(vec![0xf0])]);
    }

    #[test]
    fn bitfield_spare_bits_are_zero() {
        let shape = |pieces: u64| TorrentShape {
            piece_length: 16384,
            total_length: pieces * 16384,
            metadata_length: 1,
        };
        assert_eq!(shape(8).full_bitfield(), vec![0xff]);
        assert_eq!(shape(9).full_bitfield(), vec![0xff, 0x80]);
        assert_eq!(shape(15).full_bitfield(), vec![0xff, 0xfe]);
    }

    #[test]
    fn unchoked_requests_are_served_in_order_and_cancel_removes() {
        let now = Instant::now();
        let mut w = wire(now);
        drain(&mut w, now);
        w.handle_message(&Message::Interested, now).unwrap();
        assert!(w.interested());
        w.set_choked(false);
        for (i, b) in [(0, 0), (0, 16384), (1, 0)] {
            w.handle_message(&req(i, b, 16384), now).unwrap();
        }
        w.handle_message(&Message::Cancel(Request::new(0, 16384, 16384)), now)
            .unwrap();
        // The last piece is 1696 bytes long: a request for exactly that is fine.
        w.handle_message(&req(3, 0, 1696), now).unwrap();
        let blocks = |i, b, l| {
            Transmit::Block(Block {
                index: i,
                begin: b,
                length: l,
            })
        };
        assert_eq!(
            drain(&mut w, now),
            vec![
                Transmit::Unchoke,
                blocks(0, 0, 16384),
                blocks(1, 0, 16384),
                blocks(3, 0, 1696)
            ]
        );
        assert_eq!(
            Block {
                index: 3,
                begin: 0,
                length: 1
            }
            .offset(&SHAPE),
            98304
        );
    }

    #[test]
    fn choking_drops_pending_requests() {
        let now = Instant::now();
        let mut w = wire(now);
        drain(&mut w, now);
        w.set_choked(false);
        w.handle_message(&req(0, 0, 16384), now).unwrap();
        w.set_choked(true);
        assert_eq!(drain(&mut w, now), vec![Transmit::Unchoke, Transmit::Choke]);
        // Requests in flight while choked are dropped silently...
        w.handle_message(&req(0, 0, 16384), now).unwrap();
        assert_eq!(drain(&mut w, now), vec![]);
    }

    #[test]
    fn hostile_requests_end_the_connection() {
        let now = Instant::now();
        let cases: Vec<(Message<'static>, Violation)> = vec![
            (req(0, 0, 16385), Violation::BlockTooLong(16385)),
            (
                req(4, 0, 16),
                Violation::OutOfRange {
                    index: 4,
                    begin: 0,
                    length: 16,
                },
            ),
            (
                req(3, 1000, 1000),
                Violation::OutOfRange {
                    index: 3,
                    begin: 1000,
                    length: 1000,
                },
            ),
            (
                req(0, 0, 0),
                Violation::OutOfRange {
                    index: 0,
                    begin: 0,
                    length: 0,
                },
            ),
            (
                req(u32::MAX, u32::MAX, 16384),
                Violation::OutOfRange {
                    index: u32::MAX,
                    begin: u32::MAX,
                    length: 16384,
                },
            ),
            (
                Message::Have(4),
                Violation::OutOfRange {
                    index: 4,
                    begin: 0,
                    length: 0,
                },
            ),
            (
                Message::Piece(librqbit_peer_protocol::Piece::from_data(0, 0, b"x")),
                Violation::UnsolicitedPiece,
            ),
            (
                Message::Bitfield(ByteBuf(&[0xf0, 0])),
                Violation::BadBitfield,
            ),
        ];
        for (msg, violation) in cases {
            let mut w = wire(now);
            w.set_choked(false);
            assert_eq!(w.handle_message(&msg, now), Err(violation), "{msg:?}");
        }
    }

    #[test]
    fn floods_end_the_connection() {
        let now = Instant::now();
        let limits = PeerLimits {
            request_queue: 4,
            ..PeerLimits::default()
        };
        // Unchoked: more outstanding requests than the queue holds.
        let mut w = PeerWire::new(SHAPE, limits, false, now);
        w.set_choked(false);
        for i in 0..4 {
            w.handle_message(&req(0, i * 16, 16), now).unwrap();
        }
        assert_eq!(
            w.handle_message(&req(0, 0, 16), now),
            Err(Violation::RequestFlood)
        );
        // Choked: a few in-flight requests are tolerated, a stream of them is not.
        let mut w = PeerWire::new(SHAPE, limits, false, now);
        for _ in 0..4 {
            w.handle_message(&req(0, 0, 16), now).unwrap();
        }
        assert_eq!(
            w.handle_message(&req(0, 0, 16), now),
            Err(Violation::RequestFlood)
        );
        // Lengths are checked before the body is read.
        assert_eq!(w.check_length(64 * 1024), Ok(()));
        assert_eq!(
            w.check_length(64 * 1024 + 1),
            Err(Violation::Oversized(65537))
        );
        // A bitfield is accepted at the right length, also late (aria2 resends one).
        let mut w = PeerWire::new(SHAPE, limits, false, now);
        w.handle_message(&ext_handshake(Some(2)), now).unwrap();
        w.handle_message(&Message::Bitfield(ByteBuf(&[0xf0])), now)
            .unwrap();
        w.handle_message(&Message::Have(1), now).unwrap();
        w.handle_message(&Message::Bitfield(ByteBuf(&[0x10])), now)
            .unwrap();
    }

    fn ext_handshake(ut_metadata: Option<u8>) -> Message<'static> {
        Message::Extended(ExtendedMessage::Handshake(ExtendedHandshake {
            m: PeerExtendedMessageIds {
                ut_metadata,
                ut_pex: None,
            },
            ..Default::default()
        }))
    }

    fn meta_request(piece: u32) -> Message<'static> {
        Message::Extended(ExtendedMessage::UtMetadata(UtMetadata::Request(piece)))
    }

    #[test]
    fn metadata_requests_are_answered_with_the_peers_id() {
        let now = Instant::now();
        let mut w = wire(now);
        drain(&mut w, now);
        // Before the peer's extension handshake we do not know its id: nothing to answer with.
        w.handle_message(&meta_request(0), now).unwrap();
        assert_eq!(drain(&mut w, now), vec![]);
        w.handle_message(&ext_handshake(Some(7)), now).unwrap();
        for piece in [0, 1, 2] {
            w.handle_message(&meta_request(piece), now).unwrap();
        }
        assert_eq!(
            drain(&mut w, now),
            vec![
                Transmit::MetadataData { id: 7, piece: 0 },
                Transmit::MetadataData { id: 7, piece: 1 },
                Transmit::MetadataReject { id: 7, piece: 2 },
            ]
        );
        for _ in 0..MAX_METADATA_REQUESTS {
            w.handle_message(&meta_request(0), now).unwrap();
        }
        assert_eq!(
            w.handle_message(&meta_request(0), now),
            Err(Violation::MetadataFlood)
        );
    }

    #[test]
    fn keepalive_after_silence_and_idle_peers_end() {
        let t0 = Instant::now();
        let mut w = wire(t0);
        drain(&mut w, t0);
        assert_eq!(w.poll_timeout(), t0 + KEEPALIVE);
        let t1 = t0 + KEEPALIVE;
        w.handle_message(&Message::KeepAlive, t1).unwrap();
        w.handle_timeout(t1).unwrap();
        assert_eq!(drain(&mut w, t1), vec![Transmit::KeepAlive]);
        assert_eq!(w.poll_timeout(), t1 + KEEPALIVE);
        let t2 = t1 + PeerLimits::default().idle_timeout;
        assert_eq!(w.handle_timeout(t2), Err(Violation::Idle));
    }
}
