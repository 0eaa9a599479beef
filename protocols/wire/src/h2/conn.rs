//! The server side of one HTTP/2 connection (RFC 9113), sans-IO.
//!
//! [`Conn::recv`] takes the client's bytes as they are read; the frames we owe (SETTINGS ACK,
//! PING ACK, WINDOW_UPDATE, RST_STREAM, GOAWAY, response headers) accumulate in
//! [`Conn::out`], and [`Conn::write_data`] adds queued response DATA as the flow-control
//! windows allow. The session writes `out` to the socket. Requests come out as [`Event`]s;
//! bodies, trailers and resets are kept per stream and read with [`Conn::poll_recv`].
//!
//! A stream's handlers may be waiting in tasks: each stream keeps the [`Waker`]s of its reader
//! and writer, and the connection keeps the driver's, so a change that concerns a task wakes
//! exactly it. Nothing here reads a clock, a socket or an executor; `now` is passed in.
//!
//! Errors follow RFC 9113 §5.4: a stream error resets that stream (RST_STREAM) and the rest
//! of the connection carries on; a connection error sends GOAWAY with the last stream we
//! processed and ends it. Beyond the RFC (§10.5), floods of control frames, streams reset
//! before they are answered ("rapid reset") and streams we must reset for the client's
//! errors are budgeted; past the budget the connection ends with ENHANCE_YOUR_CALM.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::Version;
use http::header::HeaderMap;

use super::frame::{self, Header, Reason};
use super::out::Output;
use crate::head::{Fields, Memo};
use crate::hpack::{Decoder, Encoder, HpackError, Known};
use crate::priority::Priority;

/// What a connection announces and enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond it are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on one stream unacknowledged.
    pub stream_window: u32,
    /// The connection-level receive window.
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE; larger requests are answered 431.
    pub max_header_list_size: u32,
    /// Streams reset by the client before we answered them, per `flood_window`, beyond a full
    /// set of concurrent streams.
    pub max_pending_resets: usize,
    /// Streams we may reset for the client's errors before GOAWAY ENHANCE_YOUR_CALM.
    pub max_error_resets: usize,
    /// Response bytes queued per stream before its writer waits.
    pub send_buffer: usize,
    /// PING, SETTINGS and PRIORITY frames, and empty DATA frames, allowed per window.
    pub flood_window: Duration,
    pub control_frames: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent_streams: 128,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            max_frame_size: 16_384,
            max_header_list_size: 64 << 10,
            max_pending_resets: 20,
            max_error_resets: 1024,
            send_buffer: 256 << 10,
            flood_window: Duration::from_secs(1),
            control_frames: 500,
        }
    }
}

/// Something the session must act on.
// Lives in a short queue and is taken at once: boxing the request would cost an allocation per
// stream for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A new request on stream `id`. `end_stream`: it has no body.
    Request {
        id: u32,
        head: http::request::Parts,
        end_stream: bool,
    },
    /// A request whose header list is over SETTINGS_MAX_HEADER_LIST_SIZE: answer 431.
    TooLarge { id: u32 },
}

/// What a stream's reader gets.
#[derive(Debug)]
pub enum Recv {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// Why the connection ended, once it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// We sent GOAWAY with this code (a connection error, or a flood).
    Error(Reason),
    /// The client did not start with the connection preface.
    BadPreface,
}

/// Why the budget of a flood ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Ping,
    Settings,
    Priority,
    EmptyData,
    Resets,
}

/// A connection error: the code and what the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnError {
    pub reason: Reason,
    pub what: &'static str,
}

fn conn_err(reason: Reason, what: &'static str) -> ConnError {
    ConnError { reason, what }
}

/// Our response side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// No response head yet.
    Idle,
    /// Head sent; more to come.
    Open,
    /// END_STREAM queued.
    Done,
}

enum Out {
    Data(Bytes, bool),
    Trailers(HeaderMap),
}

struct Stream {
    id: u32,
    /// The client sent END_STREAM.
    recv_closed: bool,
    recv: VecDeque<Recv>,
    /// How much the client may still send on this stream.
    recv_window: i64,
    /// Bytes taken by the reader and not yet returned to the client by WINDOW_UPDATE.
    unreleased: u32,
    content_length: Option<u64>,
    received: u64,
    /// Whether the request head has been followed by its trailers.
    trailers_seen: bool,
    send: SendState,
    queue: VecDeque<Out>,
    queued: usize,
    send_window: i64,
    /// RFC 9218: from the request's `priority` field, or a PRIORITY_UPDATE frame.
    priority: Priority,
    /// Its writer, which waited for room, was woken by the last framing pass: more of the
    /// response is coming at once.
    refill: bool,
    /// Sent once the queue is empty (a response complete while the request is still coming).
    reset_after_send: Option<Reason>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Stream {
    fn new(id: u32, recv_window: i64, send_window: i64) -> Stream {
        Stream {
            id,
            recv_closed: false,
            recv: VecDeque::new(),
            recv_window,
            unreleased: 0,
            content_length: None,
            received: 0,
            trailers_seen: false,
            send: SendState::Idle,
            queue: VecDeque::new(),
            queued: 0,
            send_window,
            priority: Priority::default(),
            refill: false,
            reset_after_send: None,
            reader: None,
            writer: None,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn finished(&self) -> bool {
        self.recv_closed && self.send == SendState::Done && self.queue.is_empty()
    }
}

/// A header block being received (HEADERS, then CONTINUATION until END_HEADERS).
struct Block {
    stream: u32,
    end_stream: bool,
    buf: Vec<u8>,
    /// What the block is for once complete.
    purpose: Purpose,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A new stream's request head.
    Request,
    /// Trailers of an open stream.
    Trailers,
    /// Decoded only to keep the HPACK table in step, then the stream is reset with this code
    /// (or, for `None`, ignored).
    Discard(Option<Reason>),
}

/// How many closed stream ids are remembered, to tell a closed stream from one never opened.
const CLOSED_MEMORY: usize = 256;
/// The payload of our shutdown PING (RFC 9113 §6.8: the second GOAWAY follows its ACK).
const SHUTDOWN_PING: [u8; 8] = *b"goingawy";

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("streams", &self.streams.len())
            .field("last_stream", &self.last_stream)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// One connection; see the module docs.
pub struct Conn {
    settings: Settings,
    /// Frames to write, in order.
    pub out: Output,
    events: VecDeque<Event>,
    preface_left: usize,
    first_frame: bool,
    decoder: Decoder,
    encoder: Encoder,
    streams: Vec<Stream>,
    /// Recently closed streams, and whether we reset them (frames still in flight from the
    /// client are then ignored rather than answered).
    closed: VecDeque<(u32, bool)>,
    /// The highest stream id the client opened.
    last_stream: u32,
    block: Option<Block>,
    peer_window: i64,
    peer_max_frame: usize,
    /// The client's SETTINGS_MAX_HEADER_LIST_SIZE, when it sent one (§6.5.2: advisory).
    peer_max_header_list: Option<u32>,
    send_window: i64,
    recv_window: i64,
    unreleased: u32,
    /// GOAWAY(2^31-1) sent and the PING after it; `Some(last)` once the final GOAWAY is out.
    shutdown_started: bool,
    goaway_last: Option<u32>,
    peer_goaway: bool,
    ended: Option<Ended>,
    window_start: Option<Instant>,
    counts: [u32; 5],
    error_resets: usize,
    /// Whether some stream has DATA or trailers queued.
    data_queued: bool,
    /// PRIORITY_UPDATEs for streams not opened yet (RFC 9218 §7.1), applied when they open.
    pending_priority: Vec<(u32, Priority)>,
    /// The incremental stream that sent last: its peers of the same urgency go next.
    incremental_last: u32,
    /// [`Conn::write_data`]'s order of streams, kept for its allocation.
    order: Vec<(u8, bool, u32, usize)>,
    /// A framing pass stopped short for a more urgent stream's refill.
    held: bool,
    /// The session was told so ([`Conn::take_held`]) and lets the writers run before its next
    /// poll; a refill still not queued by then is not waited for again.
    refills_due: bool,
    /// The session's driver, woken when there is something to write.
    driver: Option<Waker>,
    /// The driver is running (between [`Conn::enter`] and [`Conn::leave`]): it writes before
    /// it waits, so what is queued meanwhile needs no wakeup.
    driving: bool,
    /// Where response header blocks are encoded before they are framed.
    block_buf: BytesMut,
    /// What the last request head parsed to, for the next one to reuse.
    memo: Memo,
}

/// Writes the fields of one response header block; see [`Conn::send_head_with`].
#[derive(Debug)]
pub struct FieldWriter<'a> {
    encoder: &'a mut Encoder,
    block: &'a mut BytesMut,
}

impl FieldWriter<'_> {
    /// One field; `name` lowercase.
    pub fn field(&mut self, name: &str, value: &[u8]) {
        self.encoder.field(name, value, self.block);
    }

    /// One of the fields the session adds to every response.
    pub fn known(&mut self, field: Known, value: &[u8]) {
        self.encoder.known(field, value, self.block);
    }
}

impl Conn {
    /// A connection whose client will start with the 24-octet preface. Our SETTINGS (and the
    /// connection window beyond its default) are queued at once: RFC 9113 §3.4, "the server
    /// connection preface [...] MUST be the first frame the server sends".
    pub fn new(settings: Settings) -> Conn {
        let mut out = Output::default();
        out.buf().reserve(128);
        let max_frame = settings
            .max_frame_size
            .clamp(frame::MIN_MAX_FRAME as u32, (1 << 24) - 1);
        let stream_window = i64::from(settings.stream_window).min(frame::MAX_WINDOW);
        let conn_window = i64::from(settings.connection_window).min(frame::MAX_WINDOW);
        frame::put_settings(
            out.buf(),
            &[
                (
                    frame::SETTINGS_MAX_CONCURRENT_STREAMS,
                    settings.max_concurrent_streams,
                ),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, stream_window as u32),
                (frame::SETTINGS_MAX_FRAME_SIZE, max_frame),
                (
                    frame::SETTINGS_MAX_HEADER_LIST_SIZE,
                    settings.max_header_list_size,
                ),
                // We schedule by RFC 9218's signals, not RFC 7540's dependency tree.
                (frame::SETTINGS_NO_RFC7540_PRIORITIES, 1),
            ],
        );
        if conn_window > frame::DEFAULT_WINDOW {
            frame::put_window_update(out.buf(), 0, (conn_window - frame::DEFAULT_WINDOW) as u32);
        }
        let settings = Settings {
            max_frame_size: max_frame,
            stream_window: stream_window as u32,
            connection_window: conn_window as u32,
            ..settings
        };
        Conn {
            settings,
            out,
            events: VecDeque::new(),
            preface_left: frame::PREFACE.len(),
            first_frame: true,
            decoder: Decoder::new(4096),
            encoder: Encoder::default(),
            streams: Vec::new(),
            closed: VecDeque::new(),
            last_stream: 0,
            block: None,
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME,
            peer_max_header_list: None,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: conn_window,
            unreleased: 0,
            shutdown_started: false,
            goaway_last: None,
            peer_goaway: false,
            ended: None,
            window_start: None,
            counts: [0; 5],
            error_resets: 0,
            data_queued: false,
            pending_priority: Vec::new(),
            incremental_last: 0,
            order: Vec::new(),
            held: false,
            refills_due: false,
            driver: None,
            driving: false,
            block_buf: BytesMut::with_capacity(256),
            memo: Memo::default(),
        }
    }

    // ---- the session's view -------------------------------------------------------------

    /// The driver starts a poll; `waker` is woken by sends made outside it (stream tasks).
    /// What is done while it runs (`recv`, `start_shutdown`, and the streams it polls in
    /// place) wakes nobody: the driver writes before it waits anyway.
    pub fn enter(&mut self, waker: &Waker) {
        if !self.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.driver = Some(waker.clone());
        }
        self.driving = true;
        if std::mem::take(&mut self.refills_due) {
            // The woken writers have run: whatever they queued is there now, and a writer
            // that queued nothing (its source is slow) must not hold the others back.
            for stream in &mut self.streams {
                stream.refill = false;
            }
        }
    }

    /// The driver's poll is over: sends wake it again.
    pub fn leave(&mut self) {
        self.driving = false;
    }

    fn wake_driver(&mut self) {
        if let Some(w) = &self.driver
            && !self.driving
        {
            w.wake_by_ref();
        }
    }

    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Set once the connection has ended with an error; `out` holds the GOAWAY.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// Whether the client's preface and first SETTINGS have arrived.
    pub fn handshaken(&self) -> bool {
        self.preface_left == 0 && !self.first_frame
    }

    /// Streams not yet finished both ways.
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether the connection is done: the final GOAWAY went out (ours, or the client's was
    /// received) and no stream is left.
    pub fn is_done(&self) -> bool {
        self.ended.is_some()
            || ((self.goaway_last.is_some() || self.peer_goaway) && self.streams.is_empty())
    }

    /// Whether DATA or trailers wait for [`Conn::write_data`].
    pub fn wants_write(&self) -> bool {
        self.data_queued
    }

    /// The largest header list the client said it accepts (SETTINGS_MAX_HEADER_LIST_SIZE,
    /// counted as in HPACK: name and value octets plus 32 per field), if it said.
    pub fn peer_max_header_list_size(&self) -> Option<u32> {
        self.peer_max_header_list
    }

    /// Whether stream `id` is still there (not reset, not finished).
    pub fn is_open(&self, id: u32) -> bool {
        self.stream_index(id).is_some()
    }

    /// RFC 9113 §6.8: GOAWAY with the largest identifier, a PING, and when its ACK arrives a
    /// second GOAWAY naming the last stream we will serve; streams up to it still finish.
    pub fn start_shutdown(&mut self) {
        if self.shutdown_started || self.ended.is_some() {
            return;
        }
        self.shutdown_started = true;
        frame::put_goaway(self.out.buf(), (1 << 31) - 1, Reason::NO_ERROR);
        frame::put_ping(self.out.buf(), SHUTDOWN_PING, false);
    }

    // ---- reading ------------------------------------------------------------------------

    /// Process the client's bytes: every complete frame is taken from `buf`, a partial one is
    /// left for the next call. On a connection error GOAWAY is queued and the error returned;
    /// the connection then takes nothing more.
    pub fn recv(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), ConnError> {
        if let Some(ended) = self.ended {
            buf.clear();
            return Err(match ended {
                Ended::Error(reason) => conn_err(reason, "connection already ended"),
                Ended::BadPreface => conn_err(Reason::PROTOCOL_ERROR, "invalid preface"),
            });
        }
        let result = self.recv_frames(buf, now);
        if let Err(e) = result {
            buf.clear();
            self.fail(e);
        }
        result
    }

    fn fail(&mut self, e: ConnError) {
        // §5.4.1: "the last stream identifier that the sender of the GOAWAY frame might have
        // taken some action on".
        self.ended.get_or_insert(Ended::Error(e.reason));
        frame::put_goaway(self.out.buf(), self.last_stream, e.reason);
        for stream in &mut self.streams {
            stream.wake();
        }
        self.streams.clear();
        self.data_queued = false;
    }

    fn recv_frames(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), ConnError> {
        if self.preface_left > 0 {
            let seen = frame::PREFACE.len() - self.preface_left;
            let take = self.preface_left.min(buf.len());
            if buf[..take] != frame::PREFACE[seen..seen + take] {
                self.ended = Some(Ended::BadPreface);
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "invalid connection preface",
                ));
            }
            buf.advance(take);
            self.preface_left -= take;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while buf.len() >= frame::HEADER_LEN {
            let header = Header::parse(buf[..frame::HEADER_LEN].try_into().expect("9 octets"));
            if header.len > self.settings.max_frame_size as usize {
                // §4.2: "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame
                // exceeds the size defined in SETTINGS_MAX_FRAME_SIZE".
                return Err(conn_err(
                    Reason::FRAME_SIZE_ERROR,
                    "frame over SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            if buf.len() < frame::HEADER_LEN + header.len {
                buf.reserve(frame::HEADER_LEN + header.len - buf.len());
                break;
            }
            buf.advance(frame::HEADER_LEN);
            let payload = buf.split_to(header.len);
            self.frame(header, payload, now)?;
            if self.ended.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn frame(&mut self, h: Header, payload: BytesMut, now: Instant) -> Result<(), ConnError> {
        if self.first_frame {
            // §3.4: "The client connection preface [...] MUST be followed by a SETTINGS frame".
            if h.kind != frame::SETTINGS || h.flags & frame::ACK != 0 {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "preface not followed by SETTINGS",
                ));
            }
            self.first_frame = false;
        }
        if let Some(block) = &self.block {
            // §6.10: a header block is HEADERS then CONTINUATION frames on the same stream,
            // with no other frame between them.
            if h.kind != frame::CONTINUATION || h.stream != block.stream {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "frame inside a header block",
                ));
            }
        }
        match h.kind {
            frame::DATA => self.data(h, payload, now),
            frame::HEADERS => self.headers(h, payload),
            frame::PRIORITY => self.priority(h, &payload, now),
            frame::RST_STREAM => self.rst_stream(h, &payload, now),
            frame::SETTINGS => self.settings(h, &payload, now),
            frame::PUSH_PROMISE => Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "PUSH_PROMISE from a client",
            )),
            frame::PING => self.ping(h, &payload, now),
            frame::GOAWAY => {
                if h.stream != 0 {
                    return Err(conn_err(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if h.len < 8 {
                    return Err(conn_err(Reason::FRAME_SIZE_ERROR, "GOAWAY shorter than 8"));
                }
                self.peer_goaway = true;
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(h, &payload),
            frame::CONTINUATION => self.continuation(h, payload),
            frame::PRIORITY_UPDATE => self.priority_update(h, &payload, now),
            // §5.5: "Implementations MUST ignore unknown or unsupported values in all
            // extensible protocol elements."
            _ => Ok(()),
        }
    }

    /// Count one frame of a budgeted kind; `Err` past the budget.
    fn count(&mut self, flood: Flood, now: Instant) -> Result<(), ConnError> {
        let (slot, budget) = match flood {
            Flood::Ping => (0, self.settings.control_frames),
            Flood::Settings => (1, self.settings.control_frames),
            Flood::Priority => (2, self.settings.control_frames),
            Flood::EmptyData => (3, self.settings.control_frames),
            Flood::Resets => (
                4,
                (self.settings.max_concurrent_streams as usize + self.settings.max_pending_resets)
                    .try_into()
                    .unwrap_or(u32::MAX),
            ),
        };
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) >= self.settings.flood_window {
            self.window_start = Some(now);
            self.counts = [0; 5];
        }
        self.counts[slot] += 1;
        if self.counts[slot] > budget {
            return Err(conn_err(Reason::ENHANCE_YOUR_CALM, flood_name(flood)));
        }
        Ok(())
    }

    fn stream_index(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    /// Whether a stream id below `last_stream` and not open was closed after being opened,
    /// and if so whether we reset it.
    fn closed_state(&self, id: u32) -> Option<bool> {
        self.closed
            .iter()
            .find(|(c, _)| *c == id)
            .map(|&(_, by_us)| by_us)
    }

    fn remember_closed(&mut self, id: u32, by_us: bool) {
        if self.closed.len() == CLOSED_MEMORY {
            self.closed.pop_front();
        }
        self.closed.push_back((id, by_us));
    }

    /// Remove stream `index`, waking whoever waits on it.
    fn close_stream(&mut self, index: usize, by_us: bool) {
        let mut stream = self.streams.swap_remove(index);
        stream.wake();
        self.remember_closed(stream.id, by_us);
    }

    /// §5.4.2: reset a stream for the client's error. Too many of them end the connection.
    fn stream_error(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
        frame::put_rst_stream(self.out.buf(), id, reason);
        if let Some(i) = self.stream_index(id) {
            self.close_stream(i, true);
        } else if self.closed_state(id).is_none() {
            self.remember_closed(id, true);
        }
        self.error_resets += 1;
        if self.error_resets > self.settings.max_error_resets {
            return Err(conn_err(
                Reason::ENHANCE_YOUR_CALM,
                "too many streams reset for errors",
            ));
        }
        Ok(())
    }

    /// Payload of a padded frame without its padding (§6.1, §6.2).
    fn unpad(flags: u8, mut payload: BytesMut) -> Result<BytesMut, ConnError> {
        if flags & frame::PADDED == 0 {
            return Ok(payload);
        }
        if payload.is_empty() {
            return Err(conn_err(
                Reason::FRAME_SIZE_ERROR,
                "padded frame without pad length",
            ));
        }
        let pad = usize::from(payload[0]);
        payload.advance(1);
        // "If the length of the padding is the length of the frame payload or greater, the
        // recipient MUST treat this as a connection error of type PROTOCOL_ERROR."
        if pad > payload.len() {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "padding longer than the payload",
            ));
        }
        payload.truncate(payload.len() - pad);
        Ok(payload)
    }

    fn data(&mut self, h: Header, payload: BytesMut, now: Instant) -> Result<(), ConnError> {
        if h.stream == 0 {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        if h.stream > self.last_stream {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        // §6.9.1: the whole payload, padding included, counts against both windows.
        let flow_len = h.len as i64;
        if flow_len > self.recv_window {
            return Err(conn_err(
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        self.recv_window -= flow_len;
        let end_stream = h.flags & frame::END_STREAM != 0;
        let data = Self::unpad(h.flags, payload)?;
        if data.is_empty() && !end_stream {
            self.count(Flood::EmptyData, now)?;
        }
        let padding = h.len - data.len();
        let Some(i) = self.stream_index(h.stream) else {
            // Closed: the octets are ours to give back to the connection window.
            self.release_connection(h.len);
            if self.closed_state(h.stream) == Some(true) {
                // §5.1: frames arriving after we sent RST_STREAM are ignored.
                return Ok(());
            }
            // §5.1 "half-closed (remote)" / "closed": STREAM_CLOSED.
            return self.stream_error(h.stream, Reason::STREAM_CLOSED);
        };
        let stream = &mut self.streams[i];
        if stream.recv_closed {
            self.release_connection(h.len);
            return self.stream_error(h.stream, Reason::STREAM_CLOSED);
        }
        if flow_len > stream.recv_window {
            self.release_connection(h.len);
            return self.stream_error(h.stream, Reason::FLOW_CONTROL_ERROR);
        }
        stream.recv_window -= flow_len;
        stream.received += data.len() as u64;
        // §8.1.1: a content-length that does not match the DATA makes the request malformed.
        if let Some(cl) = stream.content_length
            && (stream.received > cl || (end_stream && stream.received != cl))
        {
            self.release_connection(h.len);
            return self.stream_error(h.stream, Reason::PROTOCOL_ERROR);
        }
        if !data.is_empty() {
            stream.recv.push_back(Recv::Data(data.freeze()));
        }
        if end_stream {
            stream.recv_closed = true;
        }
        if let Some(w) = stream.reader.take() {
            w.wake();
        }
        if padding > 0 {
            self.release(h.stream, padding);
        }
        if end_stream && self.streams[i].finished() {
            self.close_stream(i, false);
        }
        Ok(())
    }

    fn headers(&mut self, h: Header, payload: BytesMut) -> Result<(), ConnError> {
        if h.stream == 0 {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let mut fragment = Self::unpad(h.flags, payload)?;
        let mut self_dependent = false;
        if h.flags & frame::PRIORITY_FLAG != 0 {
            if fragment.len() < 5 {
                return Err(conn_err(
                    Reason::FRAME_SIZE_ERROR,
                    "HEADERS priority truncated",
                ));
            }
            let dep = u32::from_be_bytes([fragment[0], fragment[1], fragment[2], fragment[3]])
                & 0x7fff_ffff;
            self_dependent = dep == h.stream;
            fragment.advance(5);
        }
        let end_stream = h.flags & frame::END_STREAM != 0;
        let purpose = if let Some(i) = self.stream_index(h.stream) {
            let stream = &self.streams[i];
            if stream.recv_closed {
                // §5.1 "half-closed (remote)": STREAM_CLOSED.
                Purpose::Discard(Some(Reason::STREAM_CLOSED))
            } else if !end_stream || stream.trailers_seen {
                // §8.1: a second HEADERS is a trailer section, which ends the stream.
                Purpose::Discard(Some(Reason::PROTOCOL_ERROR))
            } else {
                Purpose::Trailers
            }
        } else if h.stream <= self.last_stream {
            match self.closed_state(h.stream) {
                Some(true) => Purpose::Discard(None),
                Some(false) => Purpose::Discard(Some(Reason::STREAM_CLOSED)),
                // §5.1.1: "The identifier of a newly established stream MUST be numerically
                // greater than all streams that the initiating endpoint has opened".
                None => {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "stream id lower than one already opened",
                    ));
                }
            }
        } else if h.stream % 2 == 0 {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "even stream id from the client",
            ));
        } else {
            self.last_stream = h.stream;
            if self.goaway_last.is_some_and(|last| h.stream > last) {
                // After the final GOAWAY new streams are ignored (§6.8).
                Purpose::Discard(None)
            } else if self_dependent {
                // §5.3.1: "A stream cannot depend on itself."
                Purpose::Discard(Some(Reason::PROTOCOL_ERROR))
            } else if self.streams.len() >= self.settings.max_concurrent_streams as usize {
                // §5.1.2: REFUSED_STREAM, so the client may retry it.
                Purpose::Discard(Some(Reason::REFUSED_STREAM))
            } else {
                Purpose::Request
            }
        };
        let block = Block {
            stream: h.stream,
            end_stream,
            buf: fragment.to_vec(),
            purpose,
        };
        if h.flags & frame::END_HEADERS != 0 {
            self.block_done(block)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    fn continuation(&mut self, h: Header, payload: BytesMut) -> Result<(), ConnError> {
        let Some(block) = &mut self.block else {
            if h.stream == 0 || h.stream > self.last_stream {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION on an idle stream",
                ));
            }
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION without HEADERS",
            ));
        };
        block.buf.extend_from_slice(&payload);
        // An endless block (CONTINUATION flood) would be buffered without limit.
        if block.buf.len() > self.settings.max_header_list_size as usize + frame::MIN_MAX_FRAME {
            return Err(conn_err(
                Reason::ENHANCE_YOUR_CALM,
                "header block over the list size",
            ));
        }
        if h.flags & frame::END_HEADERS != 0 {
            let block = self.block.take().expect("checked above");
            return self.block_done(block);
        }
        Ok(())
    }

    /// A complete header block: decode it (always, so the table stays in step) and act.
    fn block_done(&mut self, block: Block) -> Result<(), ConnError> {
        let id = block.stream;
        match block.purpose {
            Purpose::Discard(reset) => {
                self.decoder
                    .decode(&block.buf, |_, _| {})
                    .map_err(compression)?;
                match reset {
                    Some(reason) => self.stream_error(id, reason),
                    None => Ok(()),
                }
            }
            Purpose::Trailers => {
                let mut fields = Fields::new(false, self.settings.max_header_list_size);
                self.decoder
                    .decode(&block.buf, |n, v| fields.field(n, v))
                    .map_err(compression)?;
                let Some(i) = self.stream_index(id) else {
                    // Reset by us while the block was arriving (its handler finished): frames
                    // after our RST_STREAM are ignored.
                    return Ok(());
                };
                if fields.malformed || fields.too_large {
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                let stream = &mut self.streams[i];
                if stream
                    .content_length
                    .is_some_and(|cl| cl != stream.received)
                {
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                stream.trailers_seen = true;
                stream.recv_closed = true;
                stream.recv.push_back(Recv::Trailers(fields.headers));
                if let Some(w) = stream.reader.take() {
                    w.wake();
                }
                if self.streams[i].finished() {
                    self.close_stream(i, false);
                }
                Ok(())
            }
            Purpose::Request => {
                let mut fields = Fields::new(true, self.settings.max_header_list_size);
                // Room for as many fields as the last request had: a map sized for the usual
                // few fields is a small allocation, one sized for many a slower one.
                fields.headers.reserve(self.memo.fields.len());
                fields.memo = std::mem::take(&mut self.memo);
                let decoded = self.decoder.decode(&block.buf, |n, v| fields.field(n, v));
                self.memo = std::mem::take(&mut fields.memo);
                decoded.map_err(compression)?;
                let mut stream =
                    Stream::new(id, i64::from(self.settings.stream_window), self.peer_window);
                if fields.too_large {
                    // §10.5.1: answered 431; the stream is served like any other.
                    stream.recv_closed = block.end_stream;
                    self.streams.push(stream);
                    self.events.push_back(Event::TooLarge { id });
                    return Ok(());
                }
                let Some((head, content_length)) = fields.into_request(Version::HTTP_2) else {
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                };
                if block.end_stream && content_length.is_some_and(|cl| cl != 0) {
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                stream.content_length = content_length;
                stream.recv_closed = block.end_stream;
                stream.priority = match self.pending_priority.iter().position(|p| p.0 == id) {
                    // The frame came after the client chose the field's value: it wins.
                    Some(at) => self.pending_priority.swap_remove(at).1,
                    None => Priority::of_request(&head.headers),
                };
                if !self.pending_priority.is_empty() {
                    // Streams below this one that were never opened never will be (§5.1.1).
                    self.pending_priority.retain(|p| p.0 > id);
                }
                self.streams.push(stream);
                self.events.push_back(Event::Request {
                    id,
                    head,
                    end_stream: block.end_stream,
                });
                Ok(())
            }
        }
    }

    fn priority(&mut self, h: Header, payload: &[u8], now: Instant) -> Result<(), ConnError> {
        if h.stream == 0 {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
        }
        self.count(Flood::Priority, now)?;
        if payload.len() != 5 {
            // §6.3: "A PRIORITY frame with a length other than 5 octets MUST be treated as a
            // stream error of type FRAME_SIZE_ERROR."
            return self.stream_error(h.stream, Reason::FRAME_SIZE_ERROR);
        }
        let dep =
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
        if dep == h.stream {
            return self.stream_error(h.stream, Reason::PROTOCOL_ERROR);
        }
        // Priorities are advisory (§5.3, deprecated by RFC 9113); we serve in arrival order.
        Ok(())
    }

    /// RFC 9218 §7.1: a new priority for a request stream, open or not opened yet.
    fn priority_update(
        &mut self,
        h: Header,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ConnError> {
        if h.stream != 0 {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "PRIORITY_UPDATE on a stream",
            ));
        }
        self.count(Flood::Priority, now)?;
        let Some((id, value)) = payload.split_first_chunk::<4>() else {
            return Err(conn_err(
                Reason::FRAME_SIZE_ERROR,
                "PRIORITY_UPDATE shorter than 4",
            ));
        };
        let id = u32::from_be_bytes(*id) & 0x7fff_ffff;
        if id == 0 {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "PRIORITY_UPDATE for stream 0",
            ));
        }
        let priority = Priority::parse(value);
        if let Some(i) = self.stream_index(id) {
            self.streams[i].priority = priority;
        } else if id % 2 == 1 && id > self.last_stream {
            if let Some(p) = self.pending_priority.iter_mut().find(|p| p.0 == id) {
                p.1 = priority;
            } else {
                // "The number of streams that have been prioritized but remain in the idle
                // state plus the number of active streams [...] MUST NOT exceed the value of
                // the SETTINGS_MAX_CONCURRENT_STREAMS parameter."
                if self.pending_priority.len() + self.streams.len()
                    >= self.settings.max_concurrent_streams as usize
                {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "PRIORITY_UPDATE for more idle streams than may be open",
                    ));
                }
                self.pending_priority.push((id, priority));
            }
        }
        // Closed streams, and push streams we never promised: nothing to reprioritise.
        Ok(())
    }

    fn rst_stream(&mut self, h: Header, payload: &[u8], now: Instant) -> Result<(), ConnError> {
        if h.stream == 0 {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(conn_err(
                Reason::FRAME_SIZE_ERROR,
                "RST_STREAM length not 4",
            ));
        }
        if h.stream > self.last_stream {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "RST_STREAM on an idle stream",
            ));
        }
        if let Some(i) = self.stream_index(h.stream) {
            // A stream reset before we answered it cost us work for nothing (CVE-2023-44487).
            let unanswered = self.streams[i].send == SendState::Idle;
            let stream = &mut self.streams[i];
            self.unreleased = self.unreleased.saturating_add(stream.unreleased);
            for item in &stream.recv {
                if let Recv::Data(d) = item {
                    self.unreleased = self.unreleased.saturating_add(d.len() as u32);
                }
            }
            // §5.1: frames after the client's RST_STREAM are STREAM_CLOSED errors.
            self.close_stream(i, false);
            self.flush_connection_window();
            if unanswered {
                self.count(Flood::Resets, now)?;
            }
        }
        Ok(())
    }

    fn settings(&mut self, h: Header, payload: &[u8], now: Instant) -> Result<(), ConnError> {
        if h.stream != 0 {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if h.flags & frame::ACK != 0 {
            if !payload.is_empty() {
                return Err(conn_err(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS ACK with a payload",
                ));
            }
            return Ok(());
        }
        if payload.len() % 6 != 0 {
            return Err(conn_err(
                Reason::FRAME_SIZE_ERROR,
                "SETTINGS length not a multiple of 6",
            ));
        }
        self.count(Flood::Settings, now)?;
        for pair in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([pair[0], pair[1]]);
            let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => self.encoder.set_max_table_size(value),
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "SETTINGS_ENABLE_PUSH above 1",
                    ));
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(conn_err(
                            Reason::FLOW_CONTROL_ERROR,
                            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    // §6.9.2: the change applies to every open stream's window.
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    for stream in &mut self.streams {
                        stream.send_window += delta;
                        if stream.send_window > frame::MAX_WINDOW {
                            return Err(conn_err(
                                Reason::FLOW_CONTROL_ERROR,
                                "SETTINGS_INITIAL_WINDOW_SIZE overflows a window",
                            ));
                        }
                    }
                    if delta > 0 {
                        self.window_opened();
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::MIN_MAX_FRAME as u32..1 << 24).contains(&value) {
                        return Err(conn_err(
                            Reason::PROTOCOL_ERROR,
                            "SETTINGS_MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value as usize;
                }
                frame::SETTINGS_MAX_HEADER_LIST_SIZE => self.peer_max_header_list = Some(value),
                frame::SETTINGS_NO_RFC7540_PRIORITIES if value > 1 => {
                    // RFC 9218 §2.1.
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "SETTINGS_NO_RFC7540_PRIORITIES above 1",
                    ));
                }
                _ => {}
            }
        }
        frame::put_settings_ack(self.out.buf());
        Ok(())
    }

    fn ping(&mut self, h: Header, payload: &[u8], now: Instant) -> Result<(), ConnError> {
        if h.stream != 0 {
            return Err(conn_err(Reason::PROTOCOL_ERROR, "PING on a stream"));
        }
        let Ok(data) = <[u8; 8]>::try_from(payload) else {
            return Err(conn_err(Reason::FRAME_SIZE_ERROR, "PING length not 8"));
        };
        if h.flags & frame::ACK != 0 {
            if data == SHUTDOWN_PING && self.shutdown_started && self.goaway_last.is_none() {
                frame::put_goaway(self.out.buf(), self.last_stream, Reason::NO_ERROR);
                self.goaway_last = Some(self.last_stream);
            }
            return Ok(());
        }
        self.count(Flood::Ping, now)?;
        frame::put_ping(self.out.buf(), data, true);
        Ok(())
    }

    fn window_update(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
            return Err(conn_err(
                Reason::FRAME_SIZE_ERROR,
                "WINDOW_UPDATE length not 4",
            ));
        };
        let increment = i64::from(u32::from_be_bytes(bytes) & 0x7fff_ffff);
        if h.stream == 0 {
            if increment == 0 {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "WINDOW_UPDATE of 0 on the connection",
                ));
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return Err(conn_err(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            self.window_opened();
            return Ok(());
        }
        if h.stream > self.last_stream {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(i) = self.stream_index(h.stream) else {
            // Closed streams may still see updates in flight (§6.9).
            return Ok(());
        };
        if increment == 0 {
            return self.stream_error(h.stream, Reason::PROTOCOL_ERROR);
        }
        let stream = &mut self.streams[i];
        stream.send_window += increment;
        if stream.send_window > frame::MAX_WINDOW {
            return self.stream_error(h.stream, Reason::FLOW_CONTROL_ERROR);
        }
        if !stream.queue.is_empty() {
            self.data_queued = true;
        }
        Ok(())
    }

    fn window_opened(&mut self) {
        if self.streams.iter().any(|s| !s.queue.is_empty()) {
            self.data_queued = true;
        }
    }

    /// Give `n` octets of the connection window back (data the reader will never see).
    fn release_connection(&mut self, n: usize) {
        self.unreleased = self.unreleased.saturating_add(n as u32);
        self.flush_connection_window();
    }

    fn flush_connection_window(&mut self) {
        if self.unreleased >= self.settings.connection_window / 2 && self.unreleased > 0 {
            frame::put_window_update(self.out.buf(), 0, self.unreleased);
            self.recv_window += i64::from(self.unreleased);
            self.unreleased = 0;
        }
    }

    /// The reader of stream `id` consumed `n` octets: both windows open again, in steps of
    /// half a window so WINDOW_UPDATE frames stay few.
    fn release(&mut self, id: u32, n: usize) {
        self.unreleased = self.unreleased.saturating_add(n as u32);
        self.flush_connection_window();
        let half = self.settings.stream_window / 2;
        if let Some(i) = self.stream_index(id) {
            let stream = &mut self.streams[i];
            stream.unreleased = stream.unreleased.saturating_add(n as u32);
            if !stream.recv_closed && stream.unreleased >= half && stream.unreleased > 0 {
                frame::put_window_update(self.out.buf(), id, stream.unreleased);
                stream.recv_window += i64::from(stream.unreleased);
                stream.unreleased = 0;
            }
        }
    }

    /// The next piece of stream `id`'s request body: data, then trailers if any, then `None`.
    /// `Err` when the stream was reset (by either side) or the connection ended.
    pub fn poll_recv(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Recv, Reason>>> {
        let Some(i) = self.stream_index(id) else {
            return Poll::Ready(Some(Err(self.gone_reason())));
        };
        let stream = &mut self.streams[i];
        match stream.recv.pop_front() {
            Some(Recv::Data(data)) => {
                let n = data.len();
                self.release(id, n);
                self.wake_driver();
                Poll::Ready(Some(Ok(Recv::Data(data))))
            }
            Some(trailers) => Poll::Ready(Some(Ok(trailers))),
            None if stream.recv_closed => Poll::Ready(None),
            None => {
                stream.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Whether the request body of `id` has been received to its end.
    pub fn recv_finished(&self, id: u32) -> bool {
        self.stream_index(id)
            .is_none_or(|i| self.streams[i].recv_closed && self.streams[i].recv.is_empty())
    }

    fn gone_reason(&self) -> Reason {
        match self.ended {
            Some(Ended::Error(reason)) => reason,
            _ => Reason::CANCEL,
        }
    }

    // ---- writing ------------------------------------------------------------------------

    /// Send an interim (1xx) response head on `id`.
    pub fn send_informational(&mut self, id: u32, status: u16) -> Result<(), Reason> {
        self.head_block(id, status, false, true, |_| {})
    }

    /// Send the response head of `id`; `end_stream` when no body follows.
    pub fn send_head(
        &mut self,
        id: u32,
        status: u16,
        headers: &HeaderMap,
        end_stream: bool,
    ) -> Result<(), Reason> {
        self.send_head_with(id, status, end_stream, |w| {
            for (name, value) in headers {
                w.field(name.as_str(), value.as_bytes());
            }
        })
    }

    /// Send the response head of `id`, its fields written by `fields` (from wherever the
    /// caller keeps them: no map needs to be built). Names must be lowercase.
    pub fn send_head_with(
        &mut self,
        id: u32,
        status: u16,
        end_stream: bool,
        fields: impl FnOnce(&mut FieldWriter<'_>),
    ) -> Result<(), Reason> {
        self.head_block(id, status, end_stream, false, fields)
    }

    fn head_block(
        &mut self,
        id: u32,
        status: u16,
        end_stream: bool,
        interim: bool,
        fields: impl FnOnce(&mut FieldWriter<'_>),
    ) -> Result<(), Reason> {
        let Some(i) = self.stream_index(id) else {
            return Err(self.gone_reason());
        };
        if self.streams[i].send != SendState::Idle {
            return Err(Reason::INTERNAL_ERROR);
        }
        // Header blocks are encoded in the order they are written: the client's decoder
        // applies them in that order.
        let mut block = std::mem::take(&mut self.block_buf);
        block.clear();
        self.encoder.begin(&mut block);
        self.encoder.status(status, &mut block);
        fields(&mut FieldWriter {
            encoder: &mut self.encoder,
            block: &mut block,
        });
        frame::put_header_block(self.out.buf(), id, &block, end_stream, self.peer_max_frame);
        self.block_buf = block;
        if !interim {
            self.streams[i].send = if end_stream {
                SendState::Done
            } else {
                SendState::Open
            };
        }
        if end_stream {
            self.after_send_done(i);
        }
        self.wake_driver();
        Ok(())
    }

    /// Queue body bytes of `id` (`end` with the last). The writer should wait for
    /// [`Conn::poll_send_room`] between chunks: this call itself never refuses for room.
    pub fn send_data(&mut self, id: u32, data: Bytes, end: bool) -> Result<(), Reason> {
        let Some(i) = self.stream_index(id) else {
            return Err(self.gone_reason());
        };
        let stream = &mut self.streams[i];
        if stream.send != SendState::Open {
            return Err(Reason::INTERNAL_ERROR);
        }
        stream.refill = false;
        if end {
            stream.send = SendState::Done;
        }
        let window = stream.send_window.min(self.send_window);
        if stream.queue.is_empty()
            && !self.data_queued
            && data.len() <= self.peer_max_frame
            && data.len() as i64 <= window
            && self.out.len() < self.settings.send_buffer
        {
            // Nothing queued on the connection, the windows have room and the socket keeps
            // up: framed at once (a small response costs no queue and no second pass).
            // Otherwise queued, to take its turn in `write_data` by priority; a queue is also
            // what makes the writer wait in `poll_send_room`.
            let flags = if end { frame::END_STREAM } else { 0 };
            let len = data.len();
            frame::put_header(self.out.buf(), len, frame::DATA, flags, id);
            self.out.put_payload(data);
            stream.send_window -= len as i64;
            self.send_window -= len as i64;
            if end {
                self.after_send_done(i);
            }
        } else {
            stream.queued += data.len();
            stream.queue.push_back(Out::Data(data, end));
            self.data_queued = true;
        }
        self.wake_driver();
        Ok(())
    }

    /// Queue the trailer section of `id`, which ends it.
    pub fn send_trailers(&mut self, id: u32, trailers: HeaderMap) -> Result<(), Reason> {
        let Some(i) = self.stream_index(id) else {
            return Err(self.gone_reason());
        };
        let stream = &mut self.streams[i];
        if stream.send != SendState::Open {
            return Err(Reason::INTERNAL_ERROR);
        }
        stream.queue.push_back(Out::Trailers(trailers));
        stream.send = SendState::Done;
        self.data_queued = true;
        self.wake_driver();
        Ok(())
    }

    /// Ready when stream `id` has fewer than `send_buffer` octets queued; `Err` when it is
    /// gone.
    pub fn poll_send_room(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<(), Reason>> {
        let Some(i) = self.stream_index(id) else {
            return Poll::Ready(Err(self.gone_reason()));
        };
        let limit = self.settings.send_buffer;
        let stream = &mut self.streams[i];
        if stream.queued < limit {
            return Poll::Ready(Ok(()));
        }
        stream.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready once everything queued on `id` has been framed (or the stream is gone); the
    /// handler waits here, under its send timeout, so a client that grants no window cannot
    /// keep a finished response queued forever.
    pub fn poll_sent(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<()> {
        let Some(i) = self.stream_index(id) else {
            return Poll::Ready(());
        };
        let stream = &mut self.streams[i];
        if stream.queue.is_empty() {
            return Poll::Ready(());
        }
        stream.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The stream's handler is done with it. A response left incomplete is reset (CANCEL);
    /// a complete one whose request is still arriving is followed by RST_STREAM(NO_ERROR)
    /// (§8.1: "a server MAY request that the client abort transmission of a request without
    /// error by sending a RST_STREAM with an error code of NO_ERROR after sending a complete
    /// response").
    pub fn finish(&mut self, id: u32) {
        let Some(i) = self.stream_index(id) else {
            return;
        };
        let stream = &mut self.streams[i];
        stream.reader = None;
        stream.writer = None;
        if stream.send != SendState::Done {
            self.reset(id, Reason::CANCEL);
            return;
        }
        if !stream.recv_closed {
            if stream.queue.is_empty() {
                self.reset(id, Reason::NO_ERROR);
            } else {
                stream.reset_after_send = Some(Reason::NO_ERROR);
            }
        }
    }

    /// Reset stream `id` now.
    pub fn reset(&mut self, id: u32, reason: Reason) {
        if let Some(i) = self.stream_index(id) {
            frame::put_rst_stream(self.out.buf(), id, reason);
            let stream = &self.streams[i];
            let mut give_back = stream.unreleased as usize;
            for item in &stream.recv {
                if let Recv::Data(d) = item {
                    give_back += d.len();
                }
            }
            self.close_stream(i, true);
            self.release_connection(give_back);
            self.wake_driver();
        }
    }

    fn after_send_done(&mut self, i: usize) {
        let stream = &self.streams[i];
        if stream.queue.is_empty() {
            if stream.finished() {
                self.close_stream(i, false);
            } else if let Some(reason) = stream.reset_after_send {
                let id = stream.id;
                self.reset(id, reason);
            }
        }
    }

    /// Frame queued DATA and trailers into `out`, as the windows allow, until `out` holds
    /// `limit` octets.
    ///
    /// Streams go in the order RFC 9218 §10 recommends: a more urgent response before a less
    /// urgent one; among responses of one urgency, those the client does not use
    /// incrementally one at a time in stream order, then the incremental ones taking turns a
    /// frame at a time. A stream that cannot send (its queue empty, or no window) gives way to
    /// the next, so no bandwidth is left unused.
    ///
    /// With one exception: a stream whose queue this pass emptied while its writer waited for
    /// room (a file being read, a member's response arriving faster than the client takes
    /// it) is about to queue more. Framing the less urgent streams meanwhile would hand them
    /// the bandwidth each time the urgent queue runs dry, so the pass stops there, once per
    /// refill, and [`Conn::take_held`] tells the session to let that writer run first.
    pub fn write_data(&mut self, limit: usize) {
        if !self.data_queued {
            return;
        }
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(
            self.streams
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.queue.is_empty() || s.refill)
                .map(|(i, s)| (s.priority.urgency, s.priority.incremental, s.id, i)),
        );
        order.sort_unstable();
        let mut group = 0;
        'pass: while group < order.len() && self.out.len() < limit {
            let urgency = order[group].0;
            let end = order[group..]
                .iter()
                .position(|o| o.0 != urgency)
                .map_or(order.len(), |n| group + n);
            let incremental = order[group..end]
                .iter()
                .position(|o| o.1)
                .map_or(end, |n| group + n);
            for &(_, _, _, i) in &order[group..incremental] {
                while self.out.len() < limit && self.send_frame(i) {}
                if self.refilling(i) {
                    break 'pass;
                }
            }
            // Incremental streams: round robin, starting after the one that sent last.
            let turn = &mut order[incremental..end];
            let first = turn.partition_point(|o| o.2 <= self.incremental_last);
            turn.rotate_left(first);
            loop {
                let mut progress = false;
                for &(_, _, id, i) in &order[incremental..end] {
                    if self.out.len() >= limit {
                        break;
                    }
                    if self.send_frame(i) {
                        self.incremental_last = id;
                        progress = true;
                    }
                }
                if !progress || self.out.len() >= limit {
                    break;
                }
            }
            if order[incremental..end].iter().any(|o| self.refilling(o.3)) {
                break 'pass;
            }
            group = end;
        }
        // Streams whose response is now complete. Nothing above removed a stream, so the
        // indices hold; taken from the highest down, each removal (`swap_remove`) moves only a
        // stream already looked at.
        order.sort_unstable_by_key(|o| std::cmp::Reverse(o.3));
        for &(_, _, _, i) in &order {
            if self.streams[i].queue.is_empty() && self.streams[i].send == SendState::Done {
                self.after_send_done(i);
            }
        }
        self.order = order;
        self.data_queued = self.streams.iter().any(|s| match s.queue.front() {
            Some(Out::Data(d, _)) => d.is_empty() || (s.send_window > 0 && self.send_window > 0),
            Some(Out::Trailers(_)) => true,
            None => false,
        });
    }

    /// Whether the stream at index `i` ran dry with more of its response about to be queued
    /// (until the session's next poll, see [`Conn::enter`]); if so the pass holds for it.
    fn refilling(&mut self, i: usize) -> bool {
        let stream = &self.streams[i];
        if stream.refill && stream.queue.is_empty() && stream.send == SendState::Open {
            self.held = true;
            return true;
        }
        false
    }

    /// Whether [`Conn::write_data`] stopped short to let a more urgent stream's writer queue
    /// more: the session should then let that writer run (yield, waking itself) and frame
    /// again in its next poll, rather than wait for the socket or a timer.
    pub fn take_held(&mut self) -> bool {
        let held = std::mem::take(&mut self.held);
        self.refills_due |= held;
        held
    }

    /// Frame the next DATA frame (as the windows allow) or the trailers of the stream at
    /// index `i`; `false` if it has nothing it can send now.
    fn send_frame(&mut self, i: usize) -> bool {
        let max_frame = self.peer_max_frame;
        let stream = &mut self.streams[i];
        let id = stream.id;
        match stream.queue.front_mut() {
            None => false,
            Some(Out::Trailers(_)) => {
                let Some(Out::Trailers(trailers)) = stream.queue.pop_front() else {
                    unreachable!()
                };
                let mut block = BytesMut::with_capacity(64);
                self.encoder.begin(&mut block);
                for (name, value) in &trailers {
                    self.encoder
                        .field(name.as_str(), value.as_bytes(), &mut block);
                }
                frame::put_header_block(self.out.buf(), id, &block, true, max_frame);
                true
            }
            Some(Out::Data(data, end)) => {
                let window = stream.send_window.min(self.send_window).max(0) as usize;
                let n = data.len().min(max_frame).min(window);
                if n == 0 && !data.is_empty() {
                    return false;
                }
                let last = n == data.len();
                let flags = if last && *end { frame::END_STREAM } else { 0 };
                frame::put_header(self.out.buf(), n, frame::DATA, flags, id);
                self.out.put_payload(data.split_to(n));
                stream.send_window -= n as i64;
                self.send_window -= n as i64;
                stream.queued -= n;
                if last {
                    stream.queue.pop_front();
                }
                if stream.queued < self.settings.send_buffer
                    && let Some(w) = stream.writer.take()
                {
                    w.wake();
                    stream.refill = true;
                }
                true
            }
        }
    }
}

fn flood_name(flood: Flood) -> &'static str {
    match flood {
        Flood::Ping => "PING flood",
        Flood::Settings => "SETTINGS flood",
        Flood::Priority => "PRIORITY flood",
        Flood::EmptyData => "empty DATA flood",
        Flood::Resets => "streams reset before they were answered (rapid reset)",
    }
}

fn compression(e: HpackError) -> ConnError {
    let _ = e;
    // RFC 9113 §4.3: "A decoding error in a field block MUST be treated as a connection error
    // of type COMPRESSION_ERROR."
    conn_err(Reason::COMPRESSION_ERROR, "header block does not decode")
}

#[cfg(test)]
mod tests {
    //! The connection against frames written by hand, as a client would send them.

    use http::Method;
    use http::header::HeaderValue;

    use super::*;
    use crate::h2::frame::{put_header, put_settings};
    use bytes::BufMut;

    /// A header block of literal fields without indexing and with literal names.
    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    fn get(path: &str) -> Vec<u8> {
        block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", path),
        ])
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        put_header(&mut out, payload.len(), kind, flags, stream);
        out.put_slice(payload);
        out
    }

    fn headers(stream: u32, block: &[u8], end_stream: bool) -> BytesMut {
        let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
        frame(frame::HEADERS, flags, stream, block)
    }

    /// A connection past the preface and the client's SETTINGS, with our own frames taken.
    fn open(settings: Settings) -> Conn {
        let mut conn = Conn::new(settings);
        let mut input = BytesMut::from(&frame::PREFACE[..]);
        put_settings(&mut input, &[]);
        feed(&mut conn, input).expect("handshake");
        assert!(conn.handshaken());
        conn.out.clear();
        conn
    }

    fn feed(conn: &mut Conn, bytes: BytesMut) -> Result<(), ConnError> {
        let mut buf = bytes;
        conn.recv(&mut buf, Instant::now())
    }

    /// The frames in `out`: (type, flags, stream, payload).
    fn frames(out: &mut BytesMut) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut all = Vec::new();
        while out.len() >= frame::HEADER_LEN {
            let h = Header::parse(out[..frame::HEADER_LEN].try_into().unwrap());
            let payload = out[frame::HEADER_LEN..frame::HEADER_LEN + h.len].to_vec();
            out.advance(frame::HEADER_LEN + h.len);
            all.push((h.kind, h.flags, h.stream, payload));
        }
        all
    }

    fn code(payload: &[u8], at: usize) -> Reason {
        Reason(u32::from_be_bytes(payload[at..at + 4].try_into().unwrap()))
    }

    fn goaway(conn: &mut Conn) -> Option<(u32, Reason)> {
        frames(&mut conn.out.take_all())
            .into_iter()
            .find(|f| f.0 == frame::GOAWAY)
            .map(|f| {
                (
                    u32::from_be_bytes(f.3[..4].try_into().unwrap()),
                    code(&f.3, 4),
                )
            })
    }

    fn resets(conn: &mut Conn) -> Vec<(u32, Reason)> {
        frames(&mut conn.out.take_all())
            .into_iter()
            .filter(|f| f.0 == frame::RST_STREAM)
            .map(|f| (f.2, code(&f.3, 0)))
            .collect()
    }

    fn request(conn: &mut Conn) -> (u32, http::request::Parts, bool) {
        match conn.next_event() {
            Some(Event::Request {
                id,
                head,
                end_stream,
            }) => (id, head, end_stream),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// A connection whose client opened its windows wide: only priorities order the DATA.
    fn open_wide() -> Conn {
        let mut conn = open(Settings::default());
        let mut input = BytesMut::new();
        put_settings(
            &mut input,
            &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)],
        );
        input.extend(frame(
            frame::WINDOW_UPDATE,
            0,
            0,
            &(8u32 << 20).to_be_bytes(),
        ));
        feed(&mut conn, input).unwrap();
        conn.out.clear();
        conn
    }

    /// Open stream `id` with a `priority` field (none if empty) and queue `len` octets of
    /// response for it.
    fn respond(conn: &mut Conn, id: u32, priority: &str, len: usize) {
        answer(conn, id, priority);
        conn.send_data(id, Bytes::from(vec![0u8; len]), true)
            .unwrap();
    }

    /// Open stream `id` with a `priority` field (none if empty) and send the response head.
    fn answer(conn: &mut Conn, id: u32, priority: &str) {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", "/"),
        ];
        if !priority.is_empty() {
            fields.push(("priority", priority));
        }
        feed(conn, headers(id, &block(&fields), true)).unwrap();
        request(conn);
        conn.send_head(id, 200, &HeaderMap::new(), false).unwrap();
    }

    /// `responses` (stream id, `priority` field, body length) on a connection with every window
    /// open: the order their DATA leaves in, as [`data_runs`], and the connection.
    fn served(responses: &[(u32, &str, usize)]) -> (Vec<u32>, Conn) {
        let mut conn = open_wide();
        for &(id, priority, len) in responses {
            respond(&mut conn, id, priority, len);
        }
        (data_runs(&mut conn, 1 << 20), conn)
    }

    /// The streams of the DATA frames written, one entry per run of frames of one stream.
    fn data_runs(conn: &mut Conn, limit: usize) -> Vec<u32> {
        conn.write_data(limit);
        let mut runs: Vec<u32> = Vec::new();
        for f in frames(&mut conn.out.take_all()) {
            if f.0 == frame::DATA && runs.last() != Some(&f.2) {
                runs.push(f.2);
            }
        }
        runs
    }

    fn priority_update(id: u32, value: &str) -> BytesMut {
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(value.as_bytes());
        frame(frame::PRIORITY_UPDATE, 0, 0, &payload)
    }

    #[test]
    fn we_announce_that_rfc_7540_priorities_are_not_used() {
        let conn = Conn::new(Settings::default());
        let ours = frames(&mut conn.out.to_bytes());
        let settings: Vec<(u16, u32)> = ours[0]
            .3
            .chunks(6)
            .map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                )
            })
            .collect();
        assert!(settings.contains(&(frame::SETTINGS_NO_RFC7540_PRIORITIES, 1)));
        // RFC 9218 §2.1: the client's value must be 0 or 1.
        let mut conn = open(Settings::default());
        let mut input = BytesMut::new();
        put_settings(&mut input, &[(frame::SETTINGS_NO_RFC7540_PRIORITIES, 1)]);
        feed(&mut conn, input).unwrap();
        let mut input = BytesMut::new();
        put_settings(&mut input, &[(frame::SETTINGS_NO_RFC7540_PRIORITIES, 2)]);
        assert!(feed(&mut conn, input).is_err());
        assert_eq!(goaway(&mut conn), Some((0, Reason::PROTOCOL_ERROR)));
    }

    #[test]
    fn more_urgent_responses_go_first() {
        let (order, conn) = served(&[
            (1, "u=5", 40_000),
            (3, "u=1", 40_000),
            (5, "", 40_000),
            (7, "u=7, i", 40_000),
        ]);
        assert_eq!(order, [3, 5, 1, 7]);
        assert_eq!(conn.active_streams(), 0);
    }

    #[test]
    fn one_urgency_is_served_in_stream_order_or_in_turns_if_incremental() {
        // Not incremental (the default): one response after the other, oldest first.
        let (order, _) = served(&[(1, "", 40_000), (3, "u=3", 40_000)]);
        assert_eq!(order, [1, 3]);
        // Incremental: a frame each in turn.
        let (order, _) = served(&[(1, "i", 40_000), (3, "i", 40_000)]);
        assert_eq!(order, [1, 3, 1, 3, 1, 3]);
        // Both kinds: the non-incremental ones first, then the others share.
        let (order, _) = served(&[
            (1, "i", 20_000),
            (3, "", 20_000),
            (5, "i", 20_000),
            (7, "", 20_000),
        ]);
        assert_eq!(order, [3, 7, 1, 5, 1, 5]);
    }

    /// The turns continue across calls: with room for one frame per call, each incremental
    /// stream gets one.
    #[test]
    fn incremental_turns_continue_from_one_write_to_the_next() {
        let mut conn = open_wide();
        respond(&mut conn, 1, "i", 40_000);
        respond(&mut conn, 3, "i", 40_000);
        respond(&mut conn, 5, "i", 40_000);
        conn.out.clear();
        let mut order = Vec::new();
        for _ in 0..6 {
            order.extend(data_runs(&mut conn, 1));
        }
        assert_eq!(order, [1, 3, 5, 1, 3, 5]);
    }

    /// A stream that cannot send (no window) does not hold back the less urgent ones.
    #[test]
    fn a_blocked_urgent_stream_lets_the_others_send() {
        let mut conn = open(Settings::default());
        respond(&mut conn, 1, "u=0", 100_000);
        respond(&mut conn, 3, "u=6", 10_000);
        // Stream 1 takes the whole 65,535-octet connection window, then stream 3 waits.
        assert_eq!(data_runs(&mut conn, 1 << 20), [1]);
        // The client opens the connection window but not stream 1's: stream 3 goes.
        feed(
            &mut conn,
            frame(frame::WINDOW_UPDATE, 0, 0, &(1u32 << 20).to_be_bytes()),
        )
        .unwrap();
        assert_eq!(data_runs(&mut conn, 1 << 20), [3]);
        feed(
            &mut conn,
            frame(frame::WINDOW_UPDATE, 0, 1, &(1u32 << 20).to_be_bytes()),
        )
        .unwrap();
        assert_eq!(data_runs(&mut conn, 1 << 20), [1]);
        assert_eq!(conn.active_streams(), 0);
    }

    /// A small response of a less urgent stream is not framed ahead of queued, more urgent
    /// data.
    #[test]
    fn a_short_response_waits_its_turn_behind_queued_data() {
        let (order, mut conn) = served(&[(1, "u=1", 40_000), (3, "u=6", 100)]);
        assert_eq!(order, [1, 3]);
        // With nothing queued, a short response is framed at once.
        respond(&mut conn, 5, "u=6", 100);
        assert!(!conn.wants_write());
        let out = frames(&mut conn.out.take_all());
        assert!(out.iter().any(|f| f.0 == frame::DATA && f.2 == 5));
    }

    /// Stream 1 (u=0) with a full queue and its writer waiting for room; its response goes on.
    fn urgent_writer_waiting() -> Conn {
        let mut conn = open_wide();
        answer(&mut conn, 1, "u=0");
        for _ in 0..4 {
            conn.send_data(1, Bytes::from(vec![1u8; 64 << 10]), false)
                .unwrap();
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(conn.poll_send_room(1, &mut cx).is_pending());
        conn
    }

    /// A more urgent stream whose queue ran dry while its writer was about to queue more
    /// holds the others back until the session's next poll, and no longer.
    #[test]
    fn a_draining_urgent_stream_is_waited_for_until_the_next_poll() {
        let mut conn = urgent_writer_waiting();
        let waker = std::task::Waker::noop();
        respond(&mut conn, 3, "u=7", 100_000);
        conn.out.clear();
        conn.enter(waker);
        // Stream 1's queue empties, its writer is woken: stream 3 waits.
        assert_eq!(data_runs(&mut conn, 1 << 20), [1]);
        assert!(conn.take_held());
        // Later passes of the same poll still wait.
        assert_eq!(data_runs(&mut conn, 1 << 20), Vec::<u32>::new());
        assert!(conn.take_held());
        conn.leave();
        // The writer queued more before the next poll: it goes first.
        conn.send_data(1, Bytes::from(vec![1u8; 1000]), false)
            .unwrap();
        conn.enter(waker);
        assert_eq!(data_runs(&mut conn, 1 << 20), [1, 3]);
        assert!(!conn.take_held());
        conn.leave();
    }

    /// A writer that was woken but queues nothing by the next poll (a slow source) does not
    /// hold the other streams back.
    #[test]
    fn a_slow_urgent_source_is_not_waited_for() {
        let mut conn = urgent_writer_waiting();
        let waker = std::task::Waker::noop();
        respond(&mut conn, 3, "u=7", 100_000);
        conn.out.clear();
        conn.enter(waker);
        assert_eq!(data_runs(&mut conn, 1 << 20), [1]);
        assert!(conn.take_held());
        conn.leave();
        conn.enter(waker);
        assert_eq!(data_runs(&mut conn, 1 << 20), [3]);
        conn.leave();
    }

    #[test]
    fn priority_update_reorders_open_streams_and_waits_for_idle_ones() {
        let mut conn = open_wide();
        respond(&mut conn, 1, "u=2", 40_000);
        respond(&mut conn, 3, "u=4", 40_000);
        // Stream 3 becomes the most urgent; stream 5, not yet opened, the least, whatever its
        // field says when it comes.
        let mut input = priority_update(3, "u=0");
        input.extend(priority_update(5, "u=7"));
        feed(&mut conn, input).unwrap();
        respond(&mut conn, 5, "u=0", 40_000);
        assert_eq!(data_runs(&mut conn, 1 << 20), [3, 1, 5]);
        // An update for a closed stream, or a push stream that never was, is ignored.
        let mut input = priority_update(1, "u=0");
        input.extend(priority_update(2, "u=0"));
        feed(&mut conn, input).unwrap();
        assert!(conn.ended().is_none());
    }

    #[test]
    fn malformed_priority_updates_are_connection_errors() {
        let cases: Vec<(BytesMut, Reason)> = vec![
            (
                frame(frame::PRIORITY_UPDATE, 0, 1, &1u32.to_be_bytes()),
                Reason::PROTOCOL_ERROR,
            ),
            (priority_update(0, "u=1"), Reason::PROTOCOL_ERROR),
            (
                frame(frame::PRIORITY_UPDATE, 0, 0, &[0, 0, 1]),
                Reason::FRAME_SIZE_ERROR,
            ),
        ];
        for (input, want) in cases {
            let mut conn = open(Settings::default());
            assert!(feed(&mut conn, input).is_err());
            assert_eq!(goaway(&mut conn), Some((0, want)));
        }
        // Idle streams prioritised beyond SETTINGS_MAX_CONCURRENT_STREAMS.
        let mut conn = open(Settings {
            max_concurrent_streams: 4,
            ..Settings::default()
        });
        respond(&mut conn, 1, "", 100_000);
        let mut input = BytesMut::new();
        for id in [3, 5, 7] {
            input.extend(priority_update(id, "u=1"));
        }
        feed(&mut conn, input).unwrap();
        // Updating one already waiting does not count twice.
        feed(&mut conn, priority_update(7, "u=2")).unwrap();
        assert!(feed(&mut conn, priority_update(9, "u=1")).is_err());
        assert_eq!(goaway(&mut conn).map(|g| g.1), Some(Reason::PROTOCOL_ERROR));
    }

    /// Updates for ids the client skipped are forgotten once a higher stream opens.
    #[test]
    fn updates_for_skipped_streams_are_dropped() {
        let mut conn = open(Settings {
            max_concurrent_streams: 2,
            ..Settings::default()
        });
        feed(&mut conn, priority_update(1, "u=1")).unwrap();
        respond(&mut conn, 3, "", 10);
        assert!(conn.pending_priority.is_empty());
        feed(&mut conn, priority_update(5, "u=1")).unwrap();
        assert_eq!(conn.pending_priority.len(), 1);
    }

    #[test]
    fn our_settings_come_first_and_the_clients_are_acknowledged() {
        let mut conn = Conn::new(Settings::default());
        let ours = frames(&mut conn.out.to_bytes());
        assert_eq!(ours[0].0, frame::SETTINGS);
        assert_eq!((ours[1].0, ours[1].2), (frame::WINDOW_UPDATE, 0));
        conn.out.clear();
        let mut input = BytesMut::from(&frame::PREFACE[..]);
        put_settings(
            &mut input,
            &[
                (frame::SETTINGS_MAX_FRAME_SIZE, 32768),
                (frame::SETTINGS_MAX_HEADER_LIST_SIZE, 300),
            ],
        );
        assert_eq!(conn.peer_max_header_list_size(), None);
        // Byte by byte: the session keeps what was not taken for the next read.
        let mut buf = BytesMut::new();
        for byte in input {
            buf.put_u8(byte);
            conn.recv(&mut buf, Instant::now()).unwrap();
        }
        assert!(buf.is_empty());
        let out = frames(&mut conn.out.take_all());
        assert_eq!(out, vec![(frame::SETTINGS, frame::ACK, 0, vec![])]);
        assert_eq!(conn.peer_max_header_list_size(), Some(300));
    }

    #[test]
    fn a_get_is_answered_with_headers_and_data() {
        let mut conn = open(Settings::default());
        feed(&mut conn, headers(1, &get("/a?b=c"), true)).unwrap();
        let (id, head, end_stream) = request(&mut conn);
        assert_eq!((id, end_stream), (1, true));
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "http://localhost/a?b=c");
        let mut fields = HeaderMap::new();
        fields.insert(http::header::SERVER, HeaderValue::from_static("switchyard"));
        conn.send_head(1, 200, &fields, false).unwrap();
        conn.send_data(1, Bytes::from_static(b"hello"), true)
            .unwrap();
        // Small and within the windows: framed at once, nothing left queued.
        assert!(!conn.wants_write());
        let out = frames(&mut conn.out.take_all());
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1), (frame::HEADERS, frame::END_HEADERS));
        assert_eq!(
            (out[1].0, out[1].1, &out[1].3[..]),
            (frame::DATA, frame::END_STREAM, &b"hello"[..])
        );
        let mut decoder = Decoder::new(4096);
        let mut decoded = Vec::new();
        decoder
            .decode(&out[0].3, |n, v| decoded.push((n.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(decoded[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(decoded[1], (b"server".to_vec(), b"switchyard".to_vec()));
        assert_eq!(conn.active_streams(), 0);
    }

    #[test]
    fn data_waits_for_the_clients_window() {
        let mut conn = open(Settings::default());
        feed(&mut conn, headers(1, &get("/"), true)).unwrap();
        request(&mut conn);
        conn.send_head(1, 200, &HeaderMap::new(), false).unwrap();
        conn.send_data(1, Bytes::from(vec![7u8; 100_000]), true)
            .unwrap();
        conn.write_data(1 << 20);
        let sent: usize = frames(&mut conn.out.take_all())
            .iter()
            .filter(|f| f.0 == frame::DATA)
            .map(|f| f.3.len())
            .sum();
        // The default windows are 65,535 octets, in frames of at most 16,384.
        assert_eq!(sent, 65_535);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(conn.poll_sent(1, &mut cx).is_pending());
        let mut update = BytesMut::new();
        update.extend(frame(frame::WINDOW_UPDATE, 0, 0, &50_000u32.to_be_bytes()));
        update.extend(frame(frame::WINDOW_UPDATE, 0, 1, &50_000u32.to_be_bytes()));
        feed(&mut conn, update).unwrap();
        conn.write_data(1 << 20);
        let rest = frames(&mut conn.out.take_all());
        let sent: usize = rest.iter().map(|f| f.3.len()).sum();
        assert_eq!(sent, 100_000 - 65_535);
        assert_eq!(rest.last().unwrap().1, frame::END_STREAM);
        assert!(conn.poll_sent(1, &mut cx).is_ready());
    }

    /// A body is framed without being copied: each DATA payload goes to the write as a slice
    /// of the `Bytes` the stream handed in, between frame headers written to the buffer.
    #[test]
    fn long_data_payloads_are_written_from_the_bytes_handed_in() {
        let mut conn = open(Settings::default());
        feed(&mut conn, headers(1, &get("/"), true)).unwrap();
        request(&mut conn);
        conn.send_head(1, 200, &HeaderMap::new(), false).unwrap();
        let body = Bytes::from((0..40_000u32).map(|i| i as u8).collect::<Vec<_>>());
        conn.send_data(1, body.clone(), true).unwrap();
        conn.write_data(1 << 20);
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = conn.out.chunks_vectored(&mut slices);
        // Frames of at most 16,384 octets: three payloads, each a slice into `body`.
        let span = body.as_ptr_range();
        let by_reference: Vec<usize> = slices[..n]
            .iter()
            .filter(|s| span.contains(&s.as_ptr()))
            .map(|s| s.len())
            .collect();
        assert_eq!(by_reference, [16_384, 16_384, 40_000 - 2 * 16_384]);
        let out = frames(&mut conn.out.take_all());
        let data: Vec<u8> = out
            .iter()
            .filter(|f| f.0 == frame::DATA)
            .flat_map(|f| f.3.iter().copied())
            .collect();
        assert!(data == body, "the DATA frames do not carry the body");
        assert_eq!(out.last().unwrap().1, frame::END_STREAM);
    }

    #[test]
    fn frames_on_idle_streams_are_connection_errors() {
        for (kind, payload) in [
            (frame::DATA, &b"x"[..]),
            (frame::RST_STREAM, &[0, 0, 0, 8][..]),
            (frame::WINDOW_UPDATE, &[0, 0, 0, 1][..]),
        ] {
            let mut conn = open(Settings::default());
            let e = feed(&mut conn, frame(kind, 0, 1, payload)).unwrap_err();
            assert_eq!(e.reason, Reason::PROTOCOL_ERROR);
            assert_eq!(goaway(&mut conn), Some((0, Reason::PROTOCOL_ERROR)));
            assert!(conn.ended().is_some());
        }
    }

    /// Fields equal to the last request's at the same position are shared from the memo; any
    /// other field is checked as if nothing were remembered, and `content-length` always is.
    #[test]
    fn repeated_fields_are_reused_and_changed_ones_checked_again() {
        let mut conn = open(Settings::default());
        let head = |path: &str, fields: &[(&str, &str)]| {
            let mut all = vec![
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "example.com"),
                (":path", path),
            ];
            all.extend_from_slice(fields);
            block(&all)
        };
        let first = head("/a?x=1", &[("user-agent", "ua/1"), ("content-length", "0")]);
        feed(&mut conn, headers(1, &first, true)).unwrap();
        let (_, parts, _) = request(&mut conn);
        assert_eq!(parts.uri.path_and_query().unwrap().as_str(), "/a?x=1");
        assert_eq!(parts.headers["user-agent"], "ua/1");

        // The same head again: the same request, from the memo.
        feed(&mut conn, headers(3, &first, true)).unwrap();
        let (id, parts, _) = request(&mut conn);
        assert_eq!(id, 3);
        assert_eq!(parts.uri.to_string(), "https://example.com/a?x=1");
        assert_eq!(parts.headers["user-agent"], "ua/1");
        assert_eq!(parts.headers["content-length"], "0");

        // A changed value at a remembered position is parsed anew.
        let changed = head("/b", &[("user-agent", "ua/2"), ("accept", "*/*")]);
        feed(&mut conn, headers(5, &changed, true)).unwrap();
        let (_, parts, _) = request(&mut conn);
        assert_eq!(parts.uri.path(), "/b");
        assert_eq!(parts.headers["user-agent"], "ua/2");
        assert_eq!(parts.headers["accept"], "*/*");

        // A forbidden field where an allowed one was remembered is still malformed, and so is
        // an empty or invalid :path after a valid one.
        for (id, bad) in [
            (7, head("/b", &[("connection", "close")])),
            (9, head("/b", &[("user-agent", "ua/2"), ("Accept", "*/*")])),
            (11, head("", &[])),
            (13, head("/b c", &[])),
        ] {
            feed(&mut conn, headers(id, &bad, true)).unwrap();
            assert_eq!(resets(&mut conn), [(id, Reason::PROTOCOL_ERROR)]);
            assert!(conn.next_event().is_none());
        }

        // content-length is checked against the DATA every time, remembered or not.
        let with_body = head("/b", &[("user-agent", "ua/2"), ("content-length", "5")]);
        for id in [15, 17] {
            feed(&mut conn, headers(id, &with_body, false)).unwrap();
            let _ = request(&mut conn);
            feed(&mut conn, frame(frame::DATA, frame::END_STREAM, id, b"abc")).unwrap();
            assert_eq!(resets(&mut conn), [(id, Reason::PROTOCOL_ERROR)]);
        }
    }

    #[test]
    fn malformed_requests_are_stream_errors_and_the_connection_goes_on() {
        let mut conn = open(Settings::default());
        let mut bad = get("/");
        bad.extend(block(&[("X-Upper", "1")]));
        feed(&mut conn, headers(1, &bad, true)).unwrap();
        assert!(conn.next_event().is_none());
        assert_eq!(resets(&mut conn), vec![(1, Reason::PROTOCOL_ERROR)]);
        // A pseudo-header after a regular field, a missing :path, a connection field.
        for (id, fields) in [
            (3, vec![(":method", "GET"), ("x", "1"), (":path", "/")]),
            (5, vec![(":method", "GET"), (":scheme", "http")]),
        ] {
            feed(&mut conn, headers(id, &block(&fields), true)).unwrap();
            assert_eq!(resets(&mut conn), vec![(id, Reason::PROTOCOL_ERROR)]);
        }
        let mut conn_field = get("/");
        conn_field.extend(block(&[("connection", "close")]));
        feed(&mut conn, headers(7, &conn_field, true)).unwrap();
        assert_eq!(resets(&mut conn), vec![(7, Reason::PROTOCOL_ERROR)]);
        // An authority that is not one.
        let bad_authority = block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a b"),
            (":path", "/"),
        ]);
        feed(&mut conn, headers(9, &bad_authority, true)).unwrap();
        assert_eq!(resets(&mut conn), vec![(9, Reason::PROTOCOL_ERROR)]);
        // The HPACK table is still in step: a good request is served, and one without
        // :authority is origin-form (Host names the authority).
        feed(&mut conn, headers(11, &get("/"), true)).unwrap();
        assert_eq!(request(&mut conn).0, 11);
        let mut hosted = block(&[(":method", "GET"), (":scheme", "https"), (":path", "/x")]);
        hosted.extend(block(&[("host", "example.com")]));
        feed(&mut conn, headers(13, &hosted, true)).unwrap();
        let (id, head, _) = request(&mut conn);
        assert_eq!((id, head.uri.to_string()), (13, "/x".to_owned()));
        assert_eq!(head.headers["host"], "example.com");
    }

    #[test]
    fn content_length_must_match_the_data() {
        let mut conn = open(Settings::default());
        let mut post = block(&[(":method", "POST"), (":scheme", "http"), (":path", "/")]);
        post.extend(block(&[("content-length", "3")]));
        feed(&mut conn, headers(1, &post, false)).unwrap();
        request(&mut conn);
        feed(&mut conn, frame(frame::DATA, frame::END_STREAM, 1, b"ab")).unwrap();
        assert_eq!(resets(&mut conn), vec![(1, Reason::PROTOCOL_ERROR)]);
        assert!(!conn.is_open(1));
    }

    #[test]
    fn request_bodies_are_read_and_the_window_reopens() {
        let settings = Settings {
            stream_window: 65_535,
            connection_window: 1 << 20,
            ..Settings::default()
        };
        let mut conn = open(settings);
        let post = block(&[(":method", "POST"), (":scheme", "http"), (":path", "/")]);
        feed(&mut conn, headers(1, &post, false)).unwrap();
        request(&mut conn);
        for len in [16_384, 16_384, 7_232] {
            feed(&mut conn, frame(frame::DATA, 0, 1, &vec![1u8; len])).unwrap();
        }
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut read = 0;
        while let Poll::Ready(Some(Ok(Recv::Data(d)))) = conn.poll_recv(1, &mut cx) {
            read += d.len();
        }
        assert_eq!(read, 40_000);
        // Half the stream's window taken: it is updated (the connection's is far larger).
        let updates: Vec<_> = frames(&mut conn.out.take_all())
            .into_iter()
            .filter(|f| f.0 == frame::WINDOW_UPDATE)
            .map(|f| (f.2, u32::from_be_bytes(f.3[..].try_into().unwrap())))
            .collect();
        assert_eq!(updates, vec![(1, 32_768)]);
        assert!(conn.poll_recv(1, &mut cx).is_pending());
        // 58,303 octets of window left: the fourth full frame overflows it, a stream error.
        for _ in 0..4 {
            feed(&mut conn, frame(frame::DATA, 0, 1, &[1u8; 16_384])).unwrap();
        }
        assert_eq!(resets(&mut conn), vec![(1, Reason::FLOW_CONTROL_ERROR)]);
        // What the reader never took is given back to the connection in time.
        assert!(conn.ended().is_none());
    }

    #[test]
    fn a_rapid_reset_flood_ends_the_connection() {
        let mut conn = open(Settings::default());
        let mut input = BytesMut::new();
        let mut id = 1;
        for _ in 0..200 {
            input.extend(headers(id, &get("/"), true));
            input.extend(frame(frame::RST_STREAM, 0, id, &8u32.to_be_bytes()));
            id += 2;
        }
        let e = feed(&mut conn, input).unwrap_err();
        assert_eq!(e.reason, Reason::ENHANCE_YOUR_CALM);
        assert_eq!(
            goaway(&mut conn).map(|g| g.1),
            Some(Reason::ENHANCE_YOUR_CALM)
        );
    }

    #[test]
    fn a_ping_flood_ends_the_connection_and_pings_are_answered() {
        let mut conn = open(Settings::default());
        feed(&mut conn, frame(frame::PING, 0, 0, b"12345678")).unwrap();
        assert_eq!(
            frames(&mut conn.out.take_all()),
            vec![(frame::PING, frame::ACK, 0, b"12345678".to_vec())]
        );
        let mut input = BytesMut::new();
        for _ in 0..600 {
            input.extend(frame(frame::PING, 0, 0, b"12345678"));
        }
        assert_eq!(
            feed(&mut conn, input).unwrap_err().reason,
            Reason::ENHANCE_YOUR_CALM
        );
    }

    #[test]
    fn streams_beyond_the_limit_are_refused() {
        let mut conn = open(Settings {
            max_concurrent_streams: 1,
            ..Settings::default()
        });
        feed(&mut conn, headers(1, &get("/"), true)).unwrap();
        feed(&mut conn, headers(3, &get("/"), true)).unwrap();
        assert_eq!(resets(&mut conn), vec![(3, Reason::REFUSED_STREAM)]);
        assert_eq!(request(&mut conn).0, 1);
        assert!(conn.next_event().is_none());
    }

    #[test]
    fn frames_after_end_stream_both_ways_are_stream_closed() {
        let mut conn = open(Settings::default());
        feed(&mut conn, headers(1, &get("/"), true)).unwrap();
        request(&mut conn);
        conn.send_head(1, 204, &HeaderMap::new(), true).unwrap();
        conn.out.clear();
        feed(&mut conn, frame(frame::DATA, frame::END_STREAM, 1, b"x")).unwrap();
        assert_eq!(resets(&mut conn), vec![(1, Reason::STREAM_CLOSED)]);
        // A lower id never opened is a connection error.
        feed(&mut conn, headers(5, &get("/"), true)).unwrap();
        request(&mut conn);
        let e = feed(&mut conn, headers(3, &get("/"), true)).unwrap_err();
        assert_eq!(e.reason, Reason::PROTOCOL_ERROR);
    }

    #[test]
    fn shutdown_sends_goaway_twice_around_a_ping() {
        let mut conn = open(Settings::default());
        feed(&mut conn, headers(1, &get("/"), true)).unwrap();
        request(&mut conn);
        conn.start_shutdown();
        let out = frames(&mut conn.out.take_all());
        assert_eq!(out[0].0, frame::GOAWAY);
        assert_eq!(
            u32::from_be_bytes(out[0].3[..4].try_into().unwrap()),
            (1 << 31) - 1
        );
        assert_eq!(out[1].0, frame::PING);
        feed(&mut conn, frame(frame::PING, frame::ACK, 0, &out[1].3)).unwrap();
        assert_eq!(goaway(&mut conn), Some((1, Reason::NO_ERROR)));
        // Stream 1 still finishes; then the connection is done.
        assert!(!conn.is_done());
        conn.send_head(1, 204, &HeaderMap::new(), true).unwrap();
        assert!(conn.is_done());
    }

    #[test]
    fn trailers_still_arriving_when_the_stream_is_reset_are_ignored() {
        let mut conn = open(Settings::default());
        let post = block(&[(":method", "POST"), (":scheme", "http"), (":path", "/")]);
        feed(&mut conn, headers(1, &post, false)).unwrap();
        request(&mut conn);
        // The trailer block starts, without END_HEADERS...
        let trailers = block(&[("grpc-status", "0")]);
        feed(
            &mut conn,
            frame(frame::HEADERS, frame::END_STREAM, 1, &trailers[..5]),
        )
        .unwrap();
        // ...the handler answers and lets go of the stream (RST_STREAM NO_ERROR)...
        conn.send_head(1, 204, &HeaderMap::new(), true).unwrap();
        conn.finish(1);
        assert_eq!(resets(&mut conn), vec![(1, Reason::NO_ERROR)]);
        // ...and the block ends: decoded (the table stays in step) and ignored.
        feed(
            &mut conn,
            frame(frame::CONTINUATION, frame::END_HEADERS, 1, &trailers[5..]),
        )
        .unwrap();
        assert!(conn.ended().is_none());
        feed(&mut conn, headers(3, &get("/"), true)).unwrap();
        assert_eq!(request(&mut conn).0, 3);
    }

    #[test]
    fn trailers_end_a_request_and_reach_the_reader() {
        let mut conn = open(Settings::default());
        let post = block(&[(":method", "POST"), (":scheme", "http"), (":path", "/")]);
        feed(&mut conn, headers(1, &post, false)).unwrap();
        request(&mut conn);
        feed(&mut conn, frame(frame::DATA, 0, 1, b"abc")).unwrap();
        feed(&mut conn, headers(1, &block(&[("grpc-status", "0")]), true)).unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            conn.poll_recv(1, &mut cx),
            Poll::Ready(Some(Ok(Recv::Data(_))))
        ));
        match conn.poll_recv(1, &mut cx) {
            Poll::Ready(Some(Ok(Recv::Trailers(t)))) => assert_eq!(t["grpc-status"], "0"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(conn.poll_recv(1, &mut cx), Poll::Ready(None)));
    }
}
