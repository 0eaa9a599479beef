//! The BitTorrent peer-wire session: one actor per connection the acceptor sniffed as
//! BitTorrent (it starts with `\x13BitTorrent protocol`), seeding one file of the registry.
//!
//! This is the driver of the sans-IO [`PeerWire`] (`switchyard-wire`): it reads the handshake,
//! looks the info-hash up in the torrent store's registry snapshot, frames and decodes messages
//! with `librqbit-peer-protocol`, asks the process-wide choker for an upload slot, and answers
//! requests with positional reads of the file into the send buffer (never the whole file in
//! memory). Anything hostile ends this connection only and is logged at debug.
//!
//! A peer that opens with an MSE (encrypted) handshake is answered too: the sans-IO responder
//! of `switchyard_wire::mse` runs first, then the same session, in plaintext when the peer
//! offers it, else with RC4 applied to every byte read and written.
//!
//! Order of work in the loop: read what the socket has without waiting and feed every complete
//! message to the state machine; ask the choker; write a bounded batch of what the state machine
//! wants sent (paced by the upload rate limit); only when nothing is left to write, wait for
//! the socket, the next timer or the drain.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use bytes::{Buf, BufMut, BytesMut};
use librqbit_bencode::BencodeValue;
use librqbit_buffers::ByteBuf;
use librqbit_peer_protocol::extended::ut_metadata::{UtMetadata, UtMetadataData};
use librqbit_peer_protocol::extended::{ExtendedMessage, PeerExtendedMessageIds};
use librqbit_peer_protocol::{
    EXTENDED_UT_METADATA_KEY, Handshake, MY_EXTENDED_UT_METADATA, Message,
};
use switchyard_services::torrent::{Seeded, TorrentStore};
use switchyard_wire::mse::{self, Cipher, Responder, Step};
use switchyard_wire::peer::{METADATA_PIECE, PeerLimits, PeerWire, TorrentShape, Transmit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use crate::{ConnGuard, SessionEnv};

/// The BEP 3 handshake: pstrlen, pstr, reserved, info_hash, peer_id.
const HANDSHAKE_LEN: usize = 68;
/// Bytes gathered before one write (blocks are 16 KiB: up to 16 of them per syscall).
const WRITE_BATCH: usize = 256 * 1024;
/// How often a peer waiting for an upload slot asks the choker again.
const CHOKE_POLL: Duration = Duration::from_secs(1);

/// Numbers peer connections for the choker.
static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

/// A peer-wire connection.
#[derive(Debug)]
pub struct PeerSession {
    conn: Option<PeerConn>,
}

#[derive(Debug)]
struct PeerConn {
    stream: TcpStream,
    peer: SocketAddr,
    inbuf: BytesMut,
    /// The connection opened with an MSE handshake (not yet run).
    encrypted: bool,
    /// RC4 both ways, when MSE selected it.
    cipher: Option<Cipher>,
    env: Rc<SessionEnv>,
    _guard: ConnGuard,
}

impl PeerSession {
    /// Start a session; `prefix` holds the bytes the acceptor read while sniffing (the start
    /// of the plain handshake).
    pub fn start(
        stream: TcpStream,
        peer: SocketAddr,
        prefix: BytesMut,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
    ) {
        Self::spawn(stream, peer, prefix, env, guard, false);
    }

    /// Start a session whose first bytes may be an MSE public key.
    pub fn start_encrypted(
        stream: TcpStream,
        peer: SocketAddr,
        prefix: BytesMut,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
    ) {
        Self::spawn(stream, peer, prefix, env, guard, true);
    }

    fn spawn(
        stream: TcpStream,
        peer: SocketAddr,
        prefix: BytesMut,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
        encrypted: bool,
    ) {
        let conn = PeerConn {
            stream,
            peer,
            inbuf: prefix,
            encrypted,
            cipher: None,
            env,
            _guard: guard,
        };
        PeerSession { conn: Some(conn) }.start();
    }
}

impl Actor for PeerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(conn) = self.conn.take() {
            ctx.spawn(
                conn.run()
                    .into_actor(self)
                    .map(|(), _act, ctx: &mut Context<Self>| ctx.stop()),
            );
        }
    }
}

/// Counts a live peer connection in the store, and frees its upload slot when it ends.
struct Registered {
    store: Arc<TorrentStore>,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.store.peers.fetch_sub(1, Ordering::AcqRel);
        self.store
            .choker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.key);
    }
}

/// Why a connection ended, for the debug log.
enum End {
    Closed,
    Io(std::io::Error),
    Refused(String),
}

impl PeerConn {
    async fn run(mut self) {
        let Some(store) = self.env.torrent.clone() else {
            return;
        };
        if store.peers.fetch_add(1, Ordering::AcqRel) >= store.config.max_peers {
            store.peers.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(peer = %self.peer, "peer limit reached; closing");
            return;
        }
        let registered = Registered {
            store: store.clone(),
            key: NEXT_PEER.fetch_add(1, Ordering::Relaxed),
        };
        let end = match self.negotiate(&store).await {
            Ok(()) => match self.handshake(&store).await {
                Ok((seeded, file, extended)) => {
                    self.serve(&registered, seeded, &file, extended).await
                }
                Err(end) => end,
            },
            Err(end) => end,
        };
        match end {
            End::Closed => tracing::debug!(peer = %self.peer, "peer closed"),
            End::Io(e) => tracing::debug!(peer = %self.peer, error = %e, "peer connection failed"),
            End::Refused(why) => tracing::debug!(peer = %self.peer, %why, "peer disconnected"),
        }
    }

    /// For a connection that opened encrypted: run the MSE handshake, bounded by
    /// `timeouts.sniff` as the plain one is. Afterwards the input buffer holds the decrypted
    /// start of the peer-wire stream.
    async fn negotiate(&mut self, store: &TorrentStore) -> Result<(), End> {
        if !self.encrypted {
            return Ok(());
        }
        let deadline = Instant::now() + self.env.timeouts.sniff;
        let mut random = [0u8; mse::RANDOM_LEN];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut random)
            .map_err(|_| End::Refused("no random numbers".into()))?;
        let mut responder = Responder::new(&random);
        let known = |key: &[u8; 20]| store.by_obfuscated_hash(key).map(|hash| hash.0);
        loop {
            match responder.poll(&mut self.inbuf, known) {
                Err(e) => return Err(End::Refused(e.to_string())),
                Ok(Step::Send(mut bytes)) => self.write(&mut bytes).await?,
                Ok(Step::Done(done)) => {
                    let mut done = *done;
                    self.write(&mut done.reply).await?;
                    self.inbuf = BytesMut::from(&done.initial[..]);
                    self.cipher = done.cipher;
                    return Ok(());
                }
                Ok(Step::Need) => {
                    match timeout_at(deadline, self.stream.read_buf(&mut self.inbuf)).await {
                        Ok(Ok(0)) => return Err(End::Closed),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(End::Io(e)),
                        Err(_) => return Err(End::Refused("no MSE handshake in time".into())),
                    }
                }
            }
        }
    }

    /// Read the peer's handshake, find its torrent, answer with ours (BEP 3).
    async fn handshake(&mut self, store: &TorrentStore) -> Result<(Arc<Seeded>, File, bool), End> {
        // The whole handshake within `timeouts.sniff`, however slowly it trickles in.
        let deadline = Instant::now() + self.env.timeouts.sniff;
        while self.inbuf.len() < HANDSHAKE_LEN {
            let before = self.inbuf.len();
            match timeout_at(deadline, self.stream.read_buf(&mut self.inbuf)).await {
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(_)) => self.decrypt_from(before),
                Ok(Err(e)) => return Err(End::Io(e)),
                Err(_) => return Err(End::Refused("no handshake in time".into())),
            }
        }
        let (hs, len) = Handshake::deserialize(&self.inbuf)
            .map_err(|e| End::Refused(format!("bad handshake: {e}")))?;
        let Some(seeded) = store.lookup(&hs.info_hash) else {
            return Err(End::Refused(format!(
                "unknown info-hash {}",
                hs.info_hash.as_string()
            )));
        };
        if hs.peer_id == store.peer_id {
            return Err(End::Refused("connected to ourselves".into()));
        }
        // Held for the connection: pieces are read from the version that was hashed.
        let file = seeded
            .open()
            .map_err(|e| End::Refused(format!("{}: {e}", hs.info_hash.as_string())))?;
        let extended = hs.supports_extended();
        self.inbuf.advance(len);
        let mut out = [0u8; HANDSHAKE_LEN];
        let n = Handshake::new(seeded.info_hash, store.peer_id).serialize_unchecked_len(&mut out);
        self.write(&mut out[..n]).await?;
        Ok((seeded, file, extended))
    }

    async fn serve(
        &mut self,
        reg: &Registered,
        seeded: Arc<Seeded>,
        file: &File,
        extended: bool,
    ) -> End {
        let store = &reg.store;
        let shape = TorrentShape {
            piece_length: seeded.piece_length,
            total_length: seeded.length,
            metadata_length: seeded.info.len() as u32,
        };
        let limits = PeerLimits {
            request_queue: store.config.request_queue,
            ..PeerLimits::default()
        };
        let mut wire = PeerWire::new(shape, limits, extended, Instant::now().into_std());
        let mut drain = self.env.drain.watch();
        let mut out = Batch::default();
        loop {
            // A peer that keeps us busy sending still stops at the drain.
            if self.env.draining() {
                return End::Refused("server draining".into());
            }
            // 1. Everything the socket has, without waiting.
            loop {
                self.inbuf.reserve(64 * 1024);
                let before = self.inbuf.len();
                match self.stream.try_read_buf(&mut self.inbuf) {
                    Ok(0) => return End::Closed,
                    Ok(_) if self.inbuf.len() < 1024 * 1024 => self.decrypt_from(before),
                    Ok(_) => {
                        self.decrypt_from(before);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return End::Io(e),
                }
            }
            if let Err(end) = self.consume(&mut wire) {
                return end;
            }
            // 2. The choker's decision, whenever interest may have changed.
            let now = Instant::now().into_std();
            let unchoked = store.choker.lock().unwrap_or_else(|p| p.into_inner()).poll(
                reg.key,
                wire.interested(),
                now,
            );
            wire.set_choked(!unchoked);
            // 3. A bounded batch of what the state machine wants sent.
            if wire.has_transmit() {
                out.clear();
                while out.len() < WRITE_BATCH {
                    let Some(t) = wire.poll_transmit(Instant::now().into_std()) else {
                        break;
                    };
                    if let Transmit::Block(b) = &t
                        && let Some(limit) = &store.upload
                    {
                        loop {
                            let wait = limit
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .take(u64::from(b.length), Instant::now().into_std());
                            match wait {
                                Ok(()) => break,
                                Err(wait) => {
                                    if !out.is_empty()
                                        && let Err(end) = self.write(out.filled()).await
                                    {
                                        return end;
                                    }
                                    out.clear();
                                    tokio::time::sleep(wait).await;
                                }
                            }
                        }
                    }
                    if let Err(end) = encode(&t, &seeded, file, &mut out) {
                        return end;
                    }
                }
                if let Err(end) = self.write(out.filled()).await {
                    return end;
                }
                continue;
            }
            // 4. Nothing to send: wait for the peer, a timer, or the drain.
            let mut deadline = Instant::from_std(wire.poll_timeout());
            if wire.interested() && wire.choking() {
                deadline = deadline.min(Instant::now() + CHOKE_POLL);
            }
            tokio::select! {
                ready = self.stream.readable() => {
                    if let Err(e) = ready {
                        return End::Io(e);
                    }
                }
                () = sleep_until(deadline) => {
                    if let Err(v) = wire.handle_timeout(Instant::now().into_std()) {
                        return End::Refused(v.to_string());
                    }
                }
                () = drain.as_mut() => return End::Refused("server draining".into()),
            }
        }
    }

    /// Decode and hand over every complete message in the input buffer.
    fn consume(&mut self, wire: &mut PeerWire) -> Result<(), End> {
        loop {
            if self.inbuf.len() < 4 {
                return Ok(());
            }
            let len =
                u32::from_be_bytes([self.inbuf[0], self.inbuf[1], self.inbuf[2], self.inbuf[3]]);
            // Checked before waiting for the body: a peer cannot make us buffer a huge message.
            wire.check_length(len)
                .map_err(|v| End::Refused(v.to_string()))?;
            let total = 4 + len as usize;
            if self.inbuf.len() < total {
                return Ok(());
            }
            // The codec is third-party code on peer bytes: a panic in it (its bencode integer
            // parsing overflows on long digit runs when overflow checks are on, found by
            // fuzzing) ends this peer, not the worker.
            let frame = &self.inbuf[..total];
            let decoded = catch_unwind(AssertUnwindSafe(|| Message::deserialize(frame, &[])))
                .map_err(|_| End::Refused("bad message: the decoder panicked".into()))?;
            let (msg, used) = decoded.map_err(|e| End::Refused(format!("bad message: {e}")))?;
            if used != total {
                return Err(End::Refused("message length mismatch".into()));
            }
            wire.handle_message(&msg, Instant::now().into_std())
                .map_err(|v| End::Refused(v.to_string()))?;
            self.inbuf.advance(total);
        }
    }

    /// Decrypt what the last read appended after `from` (under RC4).
    fn decrypt_from(&mut self, from: usize) {
        if let Some(cipher) = &mut self.cipher {
            cipher.decrypt(&mut self.inbuf[from..]);
        }
    }

    /// Write all of `buf` (encrypted in place first, under RC4), giving up if the peer accepts
    /// nothing for `timeouts.send`.
    async fn write(&mut self, buf: &mut [u8]) -> Result<(), End> {
        if let Some(cipher) = &mut self.cipher {
            cipher.encrypt(buf);
        }
        match timeout(self.env.timeouts.send, self.stream.write_all(buf)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) => Err(End::Refused("send timeout".into())),
        }
    }
}

/// The messages of one write, gathered in a buffer that is zeroed once and then reused: a
/// block is read from the file straight into it, with no zero-filling of 16 KiB first (which
/// cost as much as the read).
#[derive(Debug, Default)]
struct Batch {
    /// Initialized bytes; only `..len` are part of the batch.
    buf: Vec<u8>,
    len: usize,
}

impl Batch {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The next `n` bytes after the batch, to be written and then [`Batch::commit`]ted.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            // Grows in steps of at least one batch, so a batch is zero-filled once per session.
            self.buf.resize(end.max(WRITE_BATCH + 32 * 1024), 0);
        }
        &mut self.buf[self.len..end]
    }

    fn commit(&mut self, n: usize) {
        self.len += n;
    }

    fn filled(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

/// Append the wire form of `t` to `out`. Blocks are read from the file straight into `out`.
fn encode(t: &Transmit, seeded: &Seeded, file: &File, out: &mut Batch) -> Result<(), End> {
    let ser_err = |e: librqbit_peer_protocol::SerializeError| End::Refused(format!("encode: {e}"));
    let mut put = |msg: &Message<'_>, ids: PeerExtendedMessageIds| -> Result<(), End> {
        let room = out.room(1024 + METADATA_PIECE as usize + msg_hint(msg));
        let n = msg.serialize(room, &|| ids).map_err(ser_err)?;
        out.commit(n);
        Ok(())
    };
    let none = PeerExtendedMessageIds::default();
    match t {
        Transmit::ExtendedHandshake {
            metadata_size,
            reqq,
        } => {
            // BEP 10 handshake. Written as a plain dictionary: the codec's typed handshake
            // cannot leave `ut_pex` out of `m`, and we offer only `ut_metadata` (BEP 9).
            let bytes = |b: &'static [u8]| BencodeValue::Bytes(ByteBuf(b));
            let int = |n: u32| BencodeValue::Integer(i64::from(n));
            let m = HashMap::from([(
                ByteBuf(EXTENDED_UT_METADATA_KEY),
                int(u32::from(MY_EXTENDED_UT_METADATA)),
            )]);
            let hs = HashMap::from([
                (ByteBuf(b"m"), BencodeValue::Dict(m)),
                (ByteBuf(b"v"), bytes(b"Switchyard")),
                (ByteBuf(b"reqq"), int(*reqq)),
                (ByteBuf(b"metadata_size"), int(*metadata_size)),
            ]);
            put(
                &Message::Extended(ExtendedMessage::Dyn(0, BencodeValue::Dict(hs))),
                none,
            )
        }
        Transmit::Bitfield(bits) => put(&Message::Bitfield(ByteBuf(bits)), none),
        Transmit::Choke => put(&Message::Choke, none),
        Transmit::Unchoke => put(&Message::Unchoke, none),
        Transmit::KeepAlive => put(&Message::KeepAlive, none),
        Transmit::MetadataData { id, piece } => {
            let start = (*piece * METADATA_PIECE) as usize;
            let end = (start + METADATA_PIECE as usize).min(seeded.info.len());
            let data = UtMetadataData::from_bytes(
                *piece,
                seeded.info.len() as u32,
                ByteBuf(&seeded.info[start..end]),
            );
            let ids = PeerExtendedMessageIds {
                ut_metadata: Some(*id),
                ut_pex: None,
            };
            put(
                &Message::Extended(ExtendedMessage::UtMetadata(UtMetadata::Data(data))),
                ids,
            )
        }
        Transmit::MetadataReject { id, piece } => {
            let ids = PeerExtendedMessageIds {
                ut_metadata: Some(*id),
                ut_pex: None,
            };
            put(
                &Message::Extended(ExtendedMessage::UtMetadata(UtMetadata::Reject(*piece))),
                ids,
            )
        }
        Transmit::Block(b) => {
            // BEP 3 `piece`: <len=9+X><id=7><index><begin><block>, the block read in place.
            let len = b.length as usize;
            let room = out.room(13 + len);
            let (mut head, block) = room.split_at_mut(13);
            head.put_u32(9 + b.length);
            head.put_u8(7);
            head.put_u32(b.index);
            head.put_u32(b.begin);
            let offset = b.index as u64 * u64::from(seeded.piece_length) + u64::from(b.begin);
            file.read_exact_at(block, offset).map_err(End::Io)?;
            out.commit(13 + len);
            Ok(())
        }
    }
}

/// Extra room a message needs beyond the fixed allowance (a bitfield of a huge torrent).
fn msg_hint(msg: &Message<'_>) -> usize {
    match msg {
        Message::Bitfield(b) => b.as_ref().len(),
        _ => 0,
    }
}
