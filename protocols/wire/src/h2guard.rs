//! A first look at every frame an HTTP/2 client sends, before the HTTP/2 library sees it.
//!
//! Two jobs:
//!
//! * **Floods.** Count the frames that cost us work but carry no request: PING, SETTINGS,
//!   PRIORITY and empty DATA frames (the "ping flood", "settings flood", "resource loop" and
//!   "0-length headers/data" attacks, CVE-2019-9512/9515/9516/9518).
//! * **Connection errors the library reports with the wrong code.** RFC 9113 fixes the length
//!   of PING (8), RST_STREAM and WINDOW_UPDATE (4), SETTINGS (a multiple of 6, and empty when
//!   ACK) and GOAWAY (at least 8), and makes any other length a connection error of type
//!   FRAME_SIZE_ERROR (§6.4, §6.5, §6.7, §6.8, §6.9); the first frame after the preface must be
//!   SETTINGS, else PROTOCOL_ERROR (§3.4); SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is a
//!   FLOW_CONTROL_ERROR (§6.5.2); a header block that does not decode is a COMPRESSION_ERROR
//!   (RFC 9113 §4.3, RFC 7541). The guard says where the offending frame starts, so the session
//!   can withhold it from the library and answer GOAWAY itself.
//!
//! To tell a bad header block from a good one the guard checks every complete block with
//! [`HpackCheck`], in order, so its dynamic table sizes stay in step with the library's decoder. When in doubt (a block too large to
//! follow, a frame the library will reject for other reasons) the guard stops decoding for the
//! rest of the connection rather than risk a false alarm; the library's own checks still apply.
//!
//! RFC 9113 §10.5: "An endpoint that doesn't monitor use of these features exposes itself to a
//! risk of denial of service. Implementations SHOULD track the use of these features and set
//! limits on their use. An endpoint MAY treat activity that is suspicious as a connection
//! error of type ENHANCE_YOUR_CALM."
//!
//! [`FrameGuard`] is sans-IO: it is fed the client's bytes as they are read (starting with the
//! connection preface) and the current time, follows frame boundaries across reads, and returns
//! a [`Verdict`] when the connection must end. Rapid reset (RST_STREAM) is counted by the HTTP/2
//! library itself.

use std::time::{Duration, Instant};

use crate::hpack::HpackCheck;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// RFC 9113 §6.5.2: the SETTINGS identifier of SETTINGS_INITIAL_WINDOW_SIZE.
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// §6.9.1: the largest flow-control window.
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The dynamic table size the server's decoder allows (the library advertises no other value,
/// so the RFC 7541 default applies).
const HEADER_TABLE_SIZE: usize = 4096;
/// The largest header block (or SETTINGS payload) the guard reads. Past it the guard stops
/// decoding header blocks for the connection; the library's header-list limit still applies.
const MAX_FOLLOWED: usize = 1 << 20;

/// The frames we budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Ping,
    Settings,
    Priority,
    EmptyData,
}

/// Why the guard ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Too many frames of one kind in one window: GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §10.5).
    Flood(Flood),
    /// A frame whose length its type forbids: GOAWAY FRAME_SIZE_ERROR. The frame starts `at`
    /// bytes into the slice just observed (0 if it began in an earlier one).
    FrameSize { at: usize },
    /// The preface was not followed by SETTINGS: GOAWAY PROTOCOL_ERROR, same `at`.
    NoSettingsFirst { at: usize },
    /// SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1: GOAWAY FLOW_CONTROL_ERROR, same `at`.
    FlowControl { at: usize },
    /// A header block that is not valid HPACK: GOAWAY COMPRESSION_ERROR. `at` is where the
    /// frame that ended the block starts.
    Compression { at: usize },
}

impl Verdict {
    /// Where the offending frame starts in the slice just observed, for verdicts about one
    /// frame: the session hands the library nothing from there on.
    pub fn at(&self) -> Option<usize> {
        match *self {
            Verdict::Flood(_) => None,
            Verdict::FrameSize { at }
            | Verdict::NoSettingsFirst { at }
            | Verdict::FlowControl { at }
            | Verdict::Compression { at } => Some(at),
        }
    }
}

/// Budgets per window. Legitimate clients send a handful of each per connection.
#[derive(Debug, Clone, Copy)]
pub struct FloodLimits {
    pub window: Duration,
    /// PING, SETTINGS (non-ACK) and PRIORITY frames allowed per window, each kind counted alone.
    pub control_frames: u32,
    /// DATA frames with no payload and no END_STREAM allowed per window.
    pub empty_data: u32,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            window: Duration::from_secs(1),
            control_frames: 500,
            empty_data: 500,
        }
    }
}

/// Follows the client's frames; see the module docs.
pub struct FrameGuard {
    limits: FloodLimits,
    /// Preface bytes still to skip.
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: usize,
    window_start: Option<Instant>,
    counts: [u32; 4],
    /// Whether the first frame after the preface is still to come.
    first_frame: bool,
    /// Type and flags of the frame whose payload is being read.
    kind: u8,
    flags: u8,
    /// Whether that payload is kept (SETTINGS, HEADERS, CONTINUATION) rather than skipped.
    keep: bool,
    payload: Vec<u8>,
    /// Where the current frame starts in the slice being observed (0: in an earlier one).
    frame_start: usize,
    /// The header block being assembled from HEADERS and CONTINUATION fragments.
    block: Vec<u8>,
    /// Whether a HEADERS frame without END_HEADERS left a block open.
    block_open: bool,
    /// The HPACK check; `None` once the guard has stopped following header blocks.
    hpack: Option<HpackCheck>,
}

impl std::fmt::Debug for FrameGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameGuard")
            .field("counts", &self.counts)
            .field("block_open", &self.block_open)
            .field("decoding", &self.hpack.is_some())
            .finish_non_exhaustive()
    }
}

impl FrameGuard {
    /// A guard for a connection whose first bytes are the 24-byte client preface.
    pub fn new(limits: FloodLimits) -> Self {
        FrameGuard {
            limits,
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            window_start: None,
            counts: [0; 4],
            first_frame: true,
            kind: 0,
            flags: 0,
            keep: false,
            payload: Vec::new(),
            frame_start: 0,
            block: Vec::new(),
            block_open: false,
            hpack: Some(HpackCheck::new(HEADER_TABLE_SIZE)),
        }
    }

    /// Account for `bytes` read from the client at `now`; `Some` ends the connection.
    pub fn observe(&mut self, all: &[u8], now: Instant) -> Option<Verdict> {
        let skip = self.preface_left.min(all.len());
        self.preface_left -= skip;
        let mut bytes = &all[skip..];
        // A frame still being read began in an earlier slice, all of which the library has.
        self.frame_start = 0;
        while !bytes.is_empty() {
            // Where the frame header being completed began, within `all`.
            let header_start = (all.len() - bytes.len()).saturating_sub(self.header_len);
            if self.payload_left > 0 {
                let take = self.payload_left.min(bytes.len());
                if self.keep {
                    self.payload.extend_from_slice(&bytes[..take]);
                }
                self.payload_left -= take;
                bytes = &bytes[take..];
                if self.payload_left == 0 && self.keep {
                    if let Some(verdict) = self.payload_read() {
                        return Some(verdict);
                    }
                }
                continue;
            }
            let take = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len < FRAME_HEADER_LEN {
                break;
            }
            self.header_len = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            self.payload_left = len;
            self.frame_start = header_start;
            if std::mem::take(&mut self.first_frame) && kind != SETTINGS {
                // §3.4: "The server connection preface consists of a potentially empty SETTINGS
                // frame [...] that MUST be the first frame the server sends"; the client's likewise.
                return Some(Verdict::NoSettingsFirst { at: header_start });
            }
            if !length_allowed(kind, flags, len) {
                return Some(Verdict::FrameSize { at: header_start });
            }
            let flood = match kind {
                PING if flags & FLAG_ACK == 0 => Some(Flood::Ping),
                SETTINGS if flags & FLAG_ACK == 0 => Some(Flood::Settings),
                PRIORITY => Some(Flood::Priority),
                DATA if len == 0 && flags & FLAG_END_STREAM == 0 => Some(Flood::EmptyData),
                _ => None,
            };
            if let Some(flood) = flood {
                if self.count(flood, now) {
                    return Some(Verdict::Flood(flood));
                }
            }
            self.kind = kind;
            self.flags = flags;
            self.keep = match kind {
                SETTINGS => flags & FLAG_ACK == 0,
                HEADERS | CONTINUATION => self.hpack.is_some(),
                _ => false,
            };
            if self.keep && len > MAX_FOLLOWED {
                self.keep = false;
                self.stop_decoding();
            }
            self.payload.clear();
            if self.keep && len == 0 {
                if let Some(verdict) = self.payload_read() {
                    return Some(verdict);
                }
            }
        }
        None
    }

    /// The kept payload of the current frame is complete.
    fn payload_read(&mut self) -> Option<Verdict> {
        let at = self.frame_start;
        match self.kind {
            SETTINGS => {
                // §6.5.2: "Values above the maximum flow-control window size of 2^31-1 MUST be
                // treated as a connection error of type FLOW_CONTROL_ERROR."
                let too_large = self.payload.chunks_exact(6).any(|setting| {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    let value =
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                    id == SETTINGS_INITIAL_WINDOW_SIZE && value > MAX_WINDOW
                });
                too_large.then_some(Verdict::FlowControl { at })
            }
            HEADERS => {
                if self.block_open {
                    // §6.10: a new HEADERS inside an open block; the library ends the connection.
                    self.stop_decoding();
                    return None;
                }
                let Some(fragment) = header_fragment(&self.payload, self.flags) else {
                    // Padding or priority fields that do not fit: the library's PROTOCOL_ERROR.
                    self.stop_decoding();
                    return None;
                };
                self.block.clear();
                self.block.extend_from_slice(fragment);
                self.block_open = true;
                self.block_fragment_read(at)
            }
            CONTINUATION => {
                if !self.block_open {
                    // §6.10: a CONTINUATION with no block open; the library's PROTOCOL_ERROR.
                    self.stop_decoding();
                    return None;
                }
                if self.block.len() + self.payload.len() > MAX_FOLLOWED {
                    self.stop_decoding();
                    return None;
                }
                self.block.extend_from_slice(&self.payload);
                self.block_fragment_read(at)
            }
            _ => None,
        }
    }

    /// Decode the block once its last fragment (END_HEADERS) is in.
    fn block_fragment_read(&mut self, at: usize) -> Option<Verdict> {
        if self.flags & FLAG_END_HEADERS == 0 {
            return None;
        }
        self.block_open = false;
        let check = self.hpack.as_mut()?;
        match check.block(&self.block) {
            Ok(()) => None,
            Err(_) => {
                self.stop_decoding();
                Some(Verdict::Compression { at })
            }
        }
    }

    /// Stop following header blocks for the rest of the connection.
    fn stop_decoding(&mut self) {
        self.hpack = None;
        self.block = Vec::new();
        self.block_open = false;
    }

    /// Count one frame; true when its budget for the current window is exceeded.
    fn count(&mut self, flood: Flood, now: Instant) -> bool {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= self.limits.window {
            self.window_start = Some(now);
            self.counts = [0; 4];
        }
        let (slot, limit) = match flood {
            Flood::Ping => (0, self.limits.control_frames),
            Flood::Settings => (1, self.limits.control_frames),
            Flood::Priority => (2, self.limits.control_frames),
            Flood::EmptyData => (3, self.limits.empty_data),
        };
        self.counts[slot] += 1;
        self.counts[slot] > limit
    }
}

/// The header block fragment of a HEADERS payload: without the pad length, the priority fields
/// and the padding (RFC 9113 §6.2). `None` when they do not fit.
fn header_fragment(payload: &[u8], flags: u8) -> Option<&[u8]> {
    let mut fragment = payload;
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        let (&pad, rest) = fragment.split_first()?;
        padding = usize::from(pad);
        fragment = rest;
    }
    if flags & FLAG_PRIORITY != 0 {
        fragment = fragment.get(5..)?;
    }
    fragment.get(..fragment.len().checked_sub(padding)?)
}

/// Frame lengths RFC 9113 allows per type (others are checked by the library).
fn length_allowed(kind: u8, flags: u8, len: usize) -> bool {
    match kind {
        // §6.7: "Receipt of a PING frame with a length field value other than 8 MUST be treated
        // as a connection error of type FRAME_SIZE_ERROR."
        PING => len == 8,
        // §6.4: "A RST_STREAM frame with a length other than 4 octets MUST be treated as a
        // connection error of type FRAME_SIZE_ERROR."
        RST_STREAM => len == 4,
        // §6.9: "A WINDOW_UPDATE frame with a length other than 4 octets MUST be treated as a
        // connection error of type FRAME_SIZE_ERROR."
        WINDOW_UPDATE => len == 4,
        // §6.5: "Receipt of a SETTINGS frame with the ACK flag set and a length field value
        // other than 0 MUST be treated as a connection error of type FRAME_SIZE_ERROR." and "A
        // SETTINGS frame with a length other than a multiple of 6 octets MUST be treated as a
        // connection error of type FRAME_SIZE_ERROR."
        SETTINGS if flags & FLAG_ACK != 0 => len == 0,
        SETTINGS => len % 6 == 0,
        // §6.8: a GOAWAY carries at least the last stream id and an error code.
        GOAWAY => len >= 8,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client preface and its (empty) SETTINGS frame.
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// `:method GET`, `:scheme http`, `:path /` (static table), then `:authority: localhost` as
    /// a literal added to the dynamic table (RFC 7541 §6.2.1).
    const GET_BLOCK: &[u8] = b"\x82\x86\x84\x41\x09localhost";

    fn limits(n: u32) -> FloodLimits {
        FloodLimits {
            window: Duration::from_secs(1),
            control_frames: n,
            empty_data: n,
        }
    }

    #[test]
    fn a_ping_flood_is_noticed_past_the_budget() {
        let mut meter = FrameGuard::new(limits(3));
        let now = Instant::now();
        assert_eq!(meter.observe(PREFACE, now), None);
        let ping = frame(PING, 0, 0, &[0; 8]);
        for _ in 0..3 {
            assert_eq!(meter.observe(&ping, now), None);
        }
        assert_eq!(meter.observe(&ping, now), Some(Verdict::Flood(Flood::Ping)));
    }

    #[test]
    fn acks_and_ordinary_frames_are_free() {
        let mut meter = FrameGuard::new(limits(1));
        let now = Instant::now();
        let mut bytes = PREFACE.to_vec();
        for _ in 0..50 {
            bytes.extend(frame(PING, FLAG_ACK, 0, &[0; 8]));
            bytes.extend(frame(SETTINGS, FLAG_ACK, 0, &[]));
            bytes.extend(frame(HEADERS, 0x5, 1, GET_BLOCK));
            bytes.extend(frame(DATA, 0, 1, b"data"));
            bytes.extend(frame(DATA, FLAG_END_STREAM, 1, &[]));
            bytes.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
        }
        assert_eq!(meter.observe(&bytes, now), None);
    }

    #[test]
    fn the_budget_renews_with_each_window() {
        // The preface's SETTINGS counts too: three in the first window.
        let mut meter = FrameGuard::new(limits(3));
        let start = Instant::now();
        meter.observe(PREFACE, start);
        let settings = frame(SETTINGS, 0, 0, &[]);
        for second in 0..5 {
            let now = start + Duration::from_secs(second);
            assert_eq!(meter.observe(&settings, now), None);
            assert_eq!(meter.observe(&settings, now), None);
        }
    }

    #[test]
    fn frames_split_across_reads_byte_by_byte_are_followed() {
        let mut meter = FrameGuard::new(limits(2));
        let now = Instant::now();
        let mut bytes = PREFACE.to_vec();
        for _ in 0..3 {
            // A large frame in between must be skipped, not parsed as headers.
            bytes.extend(frame(DATA, 0, 1, &[PING; 100]));
            bytes.extend(frame(DATA, 0, 1, &[]));
        }
        let mut verdict = None;
        for byte in &bytes {
            if let Some(flood) = meter.observe(std::slice::from_ref(byte), now) {
                verdict = Some(flood);
            }
        }
        assert_eq!(verdict, Some(Verdict::Flood(Flood::EmptyData)));
    }

    #[test]
    fn priority_floods_count_too() {
        let mut meter = FrameGuard::new(limits(1));
        let now = Instant::now();
        meter.observe(PREFACE, now);
        let priority = frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 16]);
        assert_eq!(meter.observe(&priority, now), None);
        assert_eq!(
            meter.observe(&priority, now),
            Some(Verdict::Flood(Flood::Priority))
        );
    }

    #[test]
    fn fixed_length_frames_of_another_length_are_frame_size_errors() {
        let cases: [(&str, Vec<u8>); 7] = [
            ("PING of 6", frame(PING, 0, 0, &[0; 6])),
            ("PING ACK of 9", frame(PING, FLAG_ACK, 0, &[0; 9])),
            ("RST_STREAM of 3", frame(RST_STREAM, 0, 1, &[0; 3])),
            ("WINDOW_UPDATE of 3", frame(WINDOW_UPDATE, 0, 0, &[0; 3])),
            (
                "SETTINGS ACK with a payload",
                frame(SETTINGS, FLAG_ACK, 0, &[0; 6]),
            ),
            ("SETTINGS of 4", frame(SETTINGS, 0, 0, &[0; 4])),
            ("GOAWAY of 4", frame(GOAWAY, 0, 0, &[0; 4])),
        ];
        for (what, bad) in cases {
            let mut guard = FrameGuard::new(limits(100));
            let now = Instant::now();
            assert_eq!(guard.observe(PREFACE, now), None, "{what}");
            let mut bytes = frame(PING, 0, 0, &[1; 8]);
            let at = bytes.len();
            bytes.extend(&bad);
            assert_eq!(
                guard.observe(&bytes, now),
                Some(Verdict::FrameSize { at }),
                "{what}"
            );
        }
    }

    #[test]
    fn a_header_split_across_reads_is_reported_at_the_start_of_the_read() {
        let mut guard = FrameGuard::new(limits(100));
        let now = Instant::now();
        guard.observe(PREFACE, now);
        let bad = frame(PING, 0, 0, &[0; 6]);
        assert_eq!(guard.observe(&bad[..4], now), None);
        // The header began in the previous read: nothing of this one may reach the library.
        assert_eq!(
            guard.observe(&bad[4..], now),
            Some(Verdict::FrameSize { at: 0 })
        );
    }

    #[test]
    fn the_first_frame_after_the_preface_must_be_settings() {
        let mut guard = FrameGuard::new(limits(100));
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(PING, 0, 0, &[0; 8]));
        assert_eq!(
            guard.observe(&bytes, Instant::now()),
            Some(Verdict::NoSettingsFirst { at: 24 })
        );
    }

    /// The verdict for `bytes` sent after the preface and a PING, and where they started.
    fn verdict_after_ping(bytes: &[u8]) -> (Option<Verdict>, usize) {
        let mut guard = FrameGuard::new(limits(100));
        let now = Instant::now();
        assert_eq!(guard.observe(PREFACE, now), None);
        let mut all = frame(PING, 0, 0, &[1; 8]);
        let at = all.len();
        all.extend_from_slice(bytes);
        (guard.observe(&all, now), at)
    }

    #[test]
    fn header_blocks_that_do_not_decode_are_compression_errors() {
        let cases: [(&str, &[u8]); 7] = [
            // RFC 7541 §2.3.3: an index past both tables.
            ("index 70", b"\x82\xc6"),
            // §6.1: index 0 is not used.
            ("index 0", b"\x80"),
            // §6.2: a literal naming a field past the tables.
            ("name index 70", b"\x7f\x07\x01x"),
            // §5.1: an integer far larger than anything in a block.
            (
                "integer overflow",
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            ),
            // §4.2: a table size update must precede the fields.
            ("size update at the end", b"\x82\x86\x84\x20"),
            // §5.2: EOS inside a Huffman string; padding longer than 7 bits; zero padding.
            ("Huffman EOS", b"\x82\x86\x84\x7a\x84\xff\xff\xff\xff"),
            ("Huffman padding", b"\x82\x86\x84\x7a\x82\x1f\xff"),
        ];
        for (what, block) in cases {
            let (verdict, at) = verdict_after_ping(&frame(HEADERS, 0x5, 1, block));
            assert_eq!(verdict, Some(Verdict::Compression { at }), "{what}");
        }
        // §6.3 / §4.2: a size update above SETTINGS_HEADER_TABLE_SIZE.
        let (verdict, at) = verdict_after_ping(&frame(HEADERS, 0x5, 1, b"\x3f\xe2\x1f\x82"));
        assert_eq!(
            verdict,
            Some(Verdict::Compression { at }),
            "size update to 4097"
        );
    }

    #[test]
    fn valid_blocks_pass_and_the_dynamic_table_stays_in_step() {
        let mut bytes = frame(HEADERS, 0x5, 1, GET_BLOCK);
        // Index 62 is the first dynamic entry: `:authority: localhost` from the first block.
        bytes.extend(frame(HEADERS, 0x5, 3, b"\x82\x86\x84\xbe"));
        // A size update to 0 at the start of a block is fine and empties the table.
        bytes.extend(frame(HEADERS, 0x5, 5, b"\x20\x82\x86\x84"));
        assert_eq!(verdict_after_ping(&bytes).0, None);
        // ... after which index 62 no longer exists.
        bytes.extend(frame(HEADERS, 0x5, 7, b"\x82\x86\x84\xbe"));
        let at = bytes.len() - (FRAME_HEADER_LEN + 4);
        let (verdict, start) = verdict_after_ping(&bytes);
        assert_eq!(verdict, Some(Verdict::Compression { at: start + at }));
    }

    #[test]
    fn padding_and_priority_fields_are_not_part_of_the_block() {
        let mut payload = vec![3]; // pad length
        payload.extend([0, 0, 0, 0, 16]); // priority: stream dependency and weight
        payload.extend_from_slice(GET_BLOCK);
        payload.extend([0, 0, 0]);
        let flags = FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY;
        assert_eq!(
            verdict_after_ping(&frame(HEADERS, flags, 1, &payload)).0,
            None
        );
    }

    #[test]
    fn a_block_continued_across_frames_and_reads_is_decoded_whole() {
        let block = b"\x82\x86\x84\xc6";
        let mut bytes = frame(HEADERS, FLAG_END_STREAM, 1, &block[..2]);
        bytes.extend(frame(CONTINUATION, 0, 1, &block[2..3]));
        let last = bytes.len();
        bytes.extend(frame(CONTINUATION, FLAG_END_HEADERS, 1, &block[3..]));
        let (verdict, at) = verdict_after_ping(&bytes);
        assert_eq!(verdict, Some(Verdict::Compression { at: at + last }));

        // Byte by byte, the verdict comes with the last byte, at its start.
        let mut guard = FrameGuard::new(limits(100));
        let now = Instant::now();
        guard.observe(PREFACE, now);
        let verdicts: Vec<_> = bytes
            .iter()
            .filter_map(|b| guard.observe(std::slice::from_ref(b), now))
            .collect();
        assert_eq!(verdicts, [Verdict::Compression { at: 0 }]);
    }

    #[test]
    fn an_initial_window_above_the_maximum_is_a_flow_control_error() {
        let mut settings = Vec::new();
        settings.extend(0x4u16.to_be_bytes());
        settings.extend((1u32 << 31).to_be_bytes());
        let (verdict, at) = verdict_after_ping(&frame(SETTINGS, 0, 0, &settings));
        assert_eq!(verdict, Some(Verdict::FlowControl { at }));

        let mut settings = Vec::new();
        settings.extend(0x4u16.to_be_bytes());
        settings.extend(((1u32 << 31) - 1).to_be_bytes());
        assert_eq!(
            verdict_after_ping(&frame(SETTINGS, 0, 0, &settings)).0,
            None
        );
    }

    #[test]
    fn a_block_too_large_to_follow_stops_decoding_without_a_verdict() {
        let huge = vec![0x82; MAX_FOLLOWED + 1];
        let mut bytes = frame(HEADERS, FLAG_END_HEADERS, 1, &huge);
        // Not decoded any more: even a bad block passes (the library judges it).
        bytes.extend(frame(HEADERS, FLAG_END_HEADERS, 3, b"\x80"));
        assert_eq!(verdict_after_ping(&bytes).0, None);
    }
}
