//! Counting the frames an HTTP/2 client sends that cost us work but carry no request: PING,
//! SETTINGS, PRIORITY and empty DATA frames (the "ping flood", "settings flood", "resource
//! loop" and "0-length headers/data" attacks, CVE-2019-9512/9515/9516/9518).
//!
//! RFC 9113 §10.5: "An endpoint that doesn't monitor use of these features exposes itself to a
//! risk of denial of service. Implementations SHOULD track the use of these features and set
//! limits on their use. An endpoint MAY treat activity that is suspicious as a connection
//! error of type ENHANCE_YOUR_CALM."
//!
//! [`FloodMeter`] is sans-IO: it is fed the client's bytes as they are read (after the
//! connection preface) and the current time, follows frame boundaries across reads, and says
//! when a kind of frame exceeded its budget within one window. The session then ends the
//! connection with GOAWAY ENHANCE_YOUR_CALM. Rapid reset (RST_STREAM) is counted by the HTTP/2
//! library itself.

use std::time::{Duration, Instant};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
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

/// Follows the client's frames and counts the budgeted ones; see the module docs.
#[derive(Debug)]
pub struct FloodMeter {
    limits: FloodLimits,
    /// Preface bytes still to skip.
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: usize,
    window_start: Option<Instant>,
    counts: [u32; 4],
}

impl FloodMeter {
    /// A meter for a connection whose first bytes are the 24-byte client preface.
    pub fn new(limits: FloodLimits) -> Self {
        FloodMeter {
            limits,
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            window_start: None,
            counts: [0; 4],
        }
    }

    /// Account for `bytes` read from the client at `now`. Returns the first budget exceeded.
    pub fn observe(&mut self, mut bytes: &[u8], now: Instant) -> Option<Flood> {
        let skip = self.preface_left.min(bytes.len());
        self.preface_left -= skip;
        bytes = &bytes[skip..];
        while !bytes.is_empty() {
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
            let flood = match kind {
                PING if flags & FLAG_ACK == 0 => Some(Flood::Ping),
                SETTINGS if flags & FLAG_ACK == 0 => Some(Flood::Settings),
                PRIORITY => Some(Flood::Priority),
                DATA if len == 0 && flags & FLAG_END_STREAM == 0 => Some(Flood::EmptyData),
                _ => None,
            };
            if let Some(flood) = flood {
                if self.count(flood, now) {
                    return Some(flood);
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

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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
        let mut meter = FloodMeter::new(limits(3));
        let now = Instant::now();
        assert_eq!(meter.observe(PREFACE, now), None);
        let ping = frame(PING, 0, 0, &[0; 8]);
        for _ in 0..3 {
            assert_eq!(meter.observe(&ping, now), None);
        }
        assert_eq!(meter.observe(&ping, now), Some(Flood::Ping));
    }

    #[test]
    fn acks_and_ordinary_frames_are_free() {
        let mut meter = FloodMeter::new(limits(1));
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
        let mut meter = FloodMeter::new(limits(2));
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
        let mut meter = FloodMeter::new(limits(2));
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
        assert_eq!(verdict, Some(Flood::EmptyData));
    }

    #[test]
    fn priority_floods_count_too() {
        let mut meter = FloodMeter::new(limits(1));
        let now = Instant::now();
        meter.observe(PREFACE, now);
        let priority = frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 16]);
        assert_eq!(meter.observe(&priority, now), None);
        assert_eq!(meter.observe(&priority, now), Some(Flood::Priority));
    }
}
