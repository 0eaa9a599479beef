//! A first look at every frame an HTTP/2 client sends, before the HTTP/2 library sees it.
//!
//! Two jobs:
//!
//! * **Floods.** Count the frames that cost us work but carry no request: PING, SETTINGS,
//!   PRIORITY and empty DATA frames (the "ping flood", "settings flood", "resource loop" and
//!   "0-length headers/data" attacks, CVE-2019-9512/9515/9516/9518).
//! * **Frame-level connection errors the library reports with the wrong code.** RFC 9113 fixes
//!   the length of PING (8), RST_STREAM and WINDOW_UPDATE (4), SETTINGS (a multiple of 6, and
//!   empty when ACK) and GOAWAY (at least 8), and makes any other length a connection error of
//!   type FRAME_SIZE_ERROR (§6.4, §6.5, §6.7, §6.8, §6.9); the first frame after the preface
//!   must be SETTINGS, else PROTOCOL_ERROR (§3.4). The guard says where the offending frame
//!   starts, so the session can withhold it from the library and answer GOAWAY itself.
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

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;

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
#[derive(Debug)]
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
        }
    }

    /// Account for `bytes` read from the client at `now`; `Some` ends the connection.
    pub fn observe(&mut self, all: &[u8], now: Instant) -> Option<Verdict> {
        let skip = self.preface_left.min(all.len());
        self.preface_left -= skip;
        let mut bytes = &all[skip..];
        while !bytes.is_empty() {
            // Where the frame header being completed began, within `all`.
            let header_start = (all.len() - bytes.len()).saturating_sub(self.header_len);
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len());
                self.payload_left -= skip;
                bytes = &bytes[skip..];
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
        }
        None
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
            bytes.extend(frame(0x1, 0x5, 1, b"headers"));
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
}
