//! quinn's UDP socket, with every send kept within what one `sendmsg` may carry.
//!
//! quinn batches up to ten datagrams of one connection into a single GSO send (`UDP_SEGMENT`).
//! Ten datagrams of the usual 1452 bytes are 14.5 KB, but once Path MTU Discovery has found a
//! larger path (a loopback path carries 64 KiB datagrams) ten of them exceed the 65,507 bytes
//! one UDP send may hold: the kernel answers EMSGSIZE, which quinn-udp takes for a failed MTU
//! probe and drops, so the whole batch is lost and congestion control backs off. [`WithinLimit`]
//! cuts such a batch into sends of whole datagrams that fit.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The largest UDP payload of one send: the 16-bit IPv4 total length less the IPv4 and UDP
/// headers (IPv6 allows 20 bytes more; the smaller bound serves both).
pub const MAX_SEND: usize = 65_535 - 20 - 8;

/// A socket whose GSO batches never exceed [`MAX_SEND`] bytes.
pub struct WithinLimit(pub Arc<dyn AsyncUdpSocket>);

impl fmt::Debug for WithinLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WithinLimit").field(&self.0).finish()
    }
}

/// The sends that carry `transmit`: itself when it fits, else runs of whole datagrams of at
/// most [`MAX_SEND`] bytes (a run of one datagram is sent without a segment size).
fn split<'a>(transmit: &Transmit<'a>) -> impl Iterator<Item = Transmit<'a>> {
    let (destination, ecn, src_ip) = (transmit.destination, transmit.ecn, transmit.src_ip);
    let (contents, wanted) = (transmit.contents, transmit.segment_size);
    let run = match wanted {
        Some(size) if size > 0 && contents.len() > MAX_SEND => (MAX_SEND / size).max(1) * size,
        _ => contents.len().max(1),
    };
    contents.chunks(run).map(move |chunk| Transmit {
        destination,
        ecn,
        contents: chunk,
        segment_size: wanted.filter(|&size| chunk.len() > size),
        src_ip,
    })
}

impl AsyncUdpSocket for WithinLimit {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if transmit.contents.len() <= MAX_SEND {
            return self.0.try_send(transmit);
        }
        // The first send decides: if it would block, nothing has gone and quinn retries the
        // whole batch later. A later run that fails is lost like any datagram, and recovered.
        let mut sends = split(transmit);
        if let Some(first) = sends.next() {
            self.0.try_send(&first)?;
        }
        for rest in sends {
            if let Err(e) = self.0.try_send(&rest) {
                tracing::debug!(error = %e, "part of a GSO batch not sent");
                break;
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.0.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "127.0.0.1:443".parse().unwrap(),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    fn shapes(contents: &[u8], segment_size: Option<usize>) -> Vec<(usize, Option<usize>)> {
        split(&transmit(contents, segment_size))
            .map(|t| (t.contents.len(), t.segment_size))
            .collect()
    }

    #[test]
    fn a_batch_within_the_limit_is_one_send() {
        let data = vec![0; 10 * 1452];
        assert_eq!(shapes(&data, Some(1452)), [(14_520, Some(1452))]);
    }

    #[test]
    fn a_large_batch_is_cut_at_whole_datagrams() {
        // Ten datagrams of 16 KiB: three per send, then one alone.
        let data = vec![0; 10 * 16_384];
        assert_eq!(
            shapes(&data, Some(16_384)),
            [
                (49_152, Some(16_384)),
                (49_152, Some(16_384)),
                (49_152, Some(16_384)),
                (16_384, None)
            ]
        );
        // A short last datagram stays in the last run.
        let data = vec![0; 3 * 30_000 + 100];
        assert_eq!(
            shapes(&data, Some(30_000)),
            [(60_000, Some(30_000)), (30_100, Some(30_000))]
        );
    }

    #[test]
    fn datagrams_larger_than_half_the_limit_go_one_by_one() {
        let data = vec![0; 2 * 40_000];
        assert_eq!(
            shapes(&data, Some(40_000)),
            [(40_000, None), (40_000, None)]
        );
        let sends: usize = split(&transmit(&data, Some(40_000)))
            .map(|t| t.contents.len())
            .sum();
        assert_eq!(sends, data.len(), "every byte is sent once");
    }
}
