//! What a connection has to write, in order: frames assembled in one buffer, and long DATA
//! payloads kept as the [`Bytes`] they were handed in. A response body then reaches the
//! socket (with `writev`) or the TLS layer (which copies it into its records anyway) without
//! first being copied into the frame buffer.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this long are queued by reference. A shorter one is copied into the
/// buffer: cheaper than one more slice in the write, and a small response stays one
/// contiguous write. A payload kept by reference keeps the allocation it is a slice of (a
/// file chunk, at most 64 KiB) until it is written; with this minimum, a writer that stops
/// framing at N octets holds at most N / 4096 of them.
pub const BY_REFERENCE_MIN: usize = 4096;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Output {
    /// Frames and short payloads.
    buf: BytesMut,
    /// What waits before the open end of `buf`, in order.
    pieces: VecDeque<Piece>,
    /// Octets at the front of `buf` that `pieces` account for; the rest is the open end,
    /// written after every piece.
    buf_in_pieces: usize,
    /// Octets of the payloads in `pieces`.
    payload: usize,
}

#[derive(Debug)]
enum Piece {
    /// The next this many octets of the buffer.
    Buf(usize),
    Payload(Bytes),
}

impl Output {
    /// Octets waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len() + self.payload
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer frames are appended to.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Append a payload (after whatever was appended to [`Output::buf`] before).
    pub fn put_payload(&mut self, data: Bytes) {
        if data.len() < BY_REFERENCE_MIN {
            self.buf.extend_from_slice(&data);
            return;
        }
        let open = self.buf.len() - self.buf_in_pieces;
        if open > 0 {
            self.pieces.push_back(Piece::Buf(open));
            self.buf_in_pieces += open;
        }
        self.payload += data.len();
        self.pieces.push_back(Piece::Payload(data));
    }

    /// Fill `dst` with the next octets to write, in order, and return how many slices were
    /// filled (fewer than `dst.len()` when everything fits).
    pub fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut at = 0;
        for piece in &self.pieces {
            if n == dst.len() {
                return n;
            }
            dst[n] = match piece {
                Piece::Buf(len) => {
                    at += len;
                    IoSlice::new(&self.buf[at - len..at])
                }
                Piece::Payload(data) => IoSlice::new(data),
            };
            n += 1;
        }
        if n < dst.len() && at < self.buf.len() {
            dst[n] = IoSlice::new(&self.buf[at..]);
            n += 1;
        }
        n
    }

    /// Drop the first `n` octets: they were written.
    ///
    /// # Panics
    /// If fewer than `n` octets wait.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len(), "advanced past the end of the output");
        while n > 0 {
            match self.pieces.front_mut() {
                Some(Piece::Buf(len)) => {
                    let k = n.min(*len);
                    self.buf.advance(k);
                    self.buf_in_pieces -= k;
                    *len -= k;
                    n -= k;
                    if *len == 0 {
                        self.pieces.pop_front();
                    }
                }
                Some(Piece::Payload(data)) => {
                    let k = n.min(data.len());
                    data.advance(k);
                    self.payload -= k;
                    n -= k;
                    if data.is_empty() {
                        self.pieces.pop_front();
                    }
                }
                None => {
                    self.buf.advance(n);
                    n = 0;
                }
            }
        }
    }

    /// Forget everything waiting (the buffer keeps its capacity).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pieces.clear();
        self.buf_in_pieces = 0;
        self.payload = 0;
    }

    /// The buffer's capacity (0 once [`Output::take_buf`] took it).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Take the buffer away, leaving none: for a connection that has nothing to write and may
    /// stay idle long.
    pub fn take_buf(&mut self) -> BytesMut {
        debug_assert!(self.is_empty(), "a buffer taken with octets to write");
        self.clear();
        std::mem::take(&mut self.buf)
    }

    /// Write into `buf` from now on (an empty one, for instance from a pool of spares).
    pub fn set_buf(&mut self, mut buf: BytesMut) {
        debug_assert!(self.is_empty(), "a buffer replaced with octets to write");
        buf.clear();
        self.clear();
        self.buf = buf;
    }

    /// Everything waiting as one contiguous buffer, which is left empty: for tests and for
    /// checks that read the frames back.
    pub fn take_all(&mut self) -> BytesMut {
        let all = self.to_bytes();
        self.clear();
        all
    }

    /// A copy of everything waiting, as one contiguous buffer.
    pub fn to_bytes(&self) -> BytesMut {
        let mut slices = vec![IoSlice::new(&[]); self.pieces.len() + 1];
        let n = self.chunks_vectored(&mut slices);
        let mut all = BytesMut::with_capacity(self.len());
        for slice in &slices[..n] {
            all.extend_from_slice(slice);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(out: &Output, max_slices: usize) -> Vec<u8> {
        let mut slices = vec![IoSlice::new(&[]); max_slices];
        let n = out.chunks_vectored(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn short_payloads_are_copied_and_long_ones_kept_in_order() {
        let mut out = Output::default();
        out.buf().extend_from_slice(b"head1");
        out.put_payload(Bytes::from_static(b"short"));
        out.buf().extend_from_slice(b"head2");
        let long = Bytes::from(vec![b'x'; BY_REFERENCE_MIN]);
        out.put_payload(long.clone());
        out.buf().extend_from_slice(b"tail");
        let mut want = b"head1shorthead2".to_vec();
        want.extend_from_slice(&long);
        want.extend_from_slice(b"tail");
        assert_eq!(out.len(), want.len());
        assert_eq!(written(&out, 16), want);
        // The long payload is one slice of its own, not copied.
        let mut slices = [IoSlice::new(&[]); 16];
        assert_eq!(out.chunks_vectored(&mut slices), 3);
        assert_eq!(slices[1].as_ptr(), long.as_ptr());
        assert_eq!(&out.to_bytes()[..], &want[..]);
    }

    #[test]
    fn advancing_by_any_step_yields_the_same_octets() {
        let make = || {
            let mut out = Output::default();
            let mut want = Vec::new();
            for i in 0..5u8 {
                out.buf().extend_from_slice(&[i; 9]);
                want.extend_from_slice(&[i; 9]);
                let payload = vec![i + 100; BY_REFERENCE_MIN + usize::from(i)];
                want.extend_from_slice(&payload);
                out.put_payload(Bytes::from(payload));
            }
            out.buf().extend_from_slice(b"end");
            want.extend_from_slice(b"end");
            (out, want)
        };
        for step in [
            1,
            7,
            9,
            100,
            BY_REFERENCE_MIN,
            BY_REFERENCE_MIN + 9,
            1 << 20,
        ] {
            for max_slices in [1, 2, 3, 64] {
                let (mut out, want) = make();
                let mut got = Vec::new();
                while !out.is_empty() {
                    let next = written(&out, max_slices);
                    let n = next.len().min(step);
                    got.extend_from_slice(&next[..n]);
                    out.advance(n);
                    // Frames appended meanwhile go after everything queued.
                }
                assert_eq!(got, want, "step {step}, {max_slices} slices");
                assert_eq!(out.len(), 0);
            }
        }
    }

    #[test]
    fn appending_while_partly_written_keeps_the_order() {
        let mut out = Output::default();
        out.buf().extend_from_slice(b"a");
        out.put_payload(Bytes::from(vec![b'b'; BY_REFERENCE_MIN]));
        out.advance(2);
        out.buf().extend_from_slice(b"c");
        out.put_payload(Bytes::from(vec![b'd'; BY_REFERENCE_MIN]));
        out.buf().extend_from_slice(b"e");
        let mut want = vec![b'b'; BY_REFERENCE_MIN - 1];
        want.push(b'c');
        want.extend_from_slice(&[b'd'; BY_REFERENCE_MIN]);
        want.push(b'e');
        assert_eq!(written(&out, 64), want);
        assert_eq!(&out.take_all()[..], &want[..]);
        assert!(out.is_empty());
    }

    #[test]
    #[should_panic(expected = "advanced past the end")]
    fn advancing_past_the_end_panics() {
        let mut out = Output::default();
        out.buf().extend_from_slice(b"abc");
        out.advance(4);
    }
}
