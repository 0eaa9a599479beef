//! Byte-stream plumbing shared by the sessions.
//!
//! The acceptor reads the first bytes of a connection to sniff its protocol. Sessions that
//! parse with our own codec (HTTP/1.1) take those bytes as the start of their read buffer;
//! sessions driven by a library that owns the stream (TLS, HTTP/2) get a [`Prefixed`] stream
//! that replays them before reading from the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use switchyard_services::message::FileRange;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// `AsyncWrite` for a wrapper that only changes how reads behave: every write call goes
/// straight to the wrapped stream in `$field`.
macro_rules! delegate_async_write {
    ($wrapper:ident, $field:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.$field).poll_shutdown(cx)
            }
        }
    };
}

/// The `len` octets of `file` at `offset`, in a fresh buffer that `pread` fills without its
/// being zeroed first. `Ok(None)` when the file ends before them: it shrank while being sent.
/// Largest single `sendfile` call; the loop continues until the range is sent.
const SENDFILE_CHUNK: usize = 1 << 20;

/// `sendfile(2)` the whole of `range` to `stream`: the bytes go from the page cache to the
/// socket without passing through user space. Each wait for socket space is bounded by
/// `send_timeout`.
pub async fn send_file(
    stream: &tokio::net::TcpStream,
    range: &FileRange,
    send_timeout: Duration,
) -> io::Result<()> {
    let mut offset = range.offset;
    let end = range.offset + range.len;
    while offset < end {
        let count = usize::try_from(end - offset)
            .unwrap_or(SENDFILE_CHUNK)
            .min(SENDFILE_CHUNK);
        tokio::time::timeout(send_timeout, stream.writable())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"))??;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, &*range.file, Some(&mut offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            // The file shrank under us: the response cannot be completed; closing tells the
            // client its copy is truncated.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn read_file_chunk(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Option<Bytes>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The allocation may be larger than asked for, and `pread` fills what there is.
    buf.truncate(len);
    Ok(Some(Bytes::from(buf)))
}

/// A stream whose reads first return `prefix`, then the inner stream's bytes. Writes go
/// straight to the inner stream.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Give the memory back: the prefix is never refilled.
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

delegate_async_write!(Prefixed, inner);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn file_chunks_are_read_exactly_and_a_short_file_is_told() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        for (offset, len) in [
            (0, 1),
            (0, 65_536),
            (1_000, 65_536),
            (199_999, 1),
            (100, 199_900),
        ] {
            let chunk = read_file_chunk(&file, offset, len)
                .expect("read")
                .expect("in the file");
            let at = offset as usize;
            assert!(
                chunk == content[at..at + len],
                "chunk at {offset}, {len} octets"
            );
        }
        assert!(
            read_file_chunk(&file, 199_000, 1_001)
                .expect("read")
                .is_none()
        );
        assert!(read_file_chunk(&file, 300_000, 10).expect("read").is_none());
    }

    #[tokio::test]
    async fn replays_the_prefix_then_reads_the_stream() {
        let (client, server) = tokio::io::duplex(64);
        let mut stream = Prefixed::new(BytesMut::from(&b"PRI * "[..]), server);
        let mut client = client;
        client
            .write_all(b"HTTP/2.0")
            .await
            .expect("write to duplex");
        drop(client);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.expect("read to end");
        assert_eq!(all, b"PRI * HTTP/2.0");
    }

    #[tokio::test]
    async fn a_small_read_buffer_takes_the_prefix_in_pieces() {
        let (_client, server) = tokio::io::duplex(64);
        let mut stream = Prefixed::new(BytesMut::from(&b"abcdef"[..]), server);
        let mut two = [0u8; 2];
        stream.read_exact(&mut two).await.expect("first piece");
        assert_eq!(&two, b"ab");
        stream.read_exact(&mut two).await.expect("second piece");
        assert_eq!(&two, b"cd");
    }
}

/// The byte stream under an HTTP/1.1 session: a plain socket (which allows `sendfile` and
/// buffer-free idle waits) or a TLS stream over it.
#[derive(Debug)]
pub enum Transport {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<Prefixed<tokio::net::TcpStream>>>),
}

impl Transport {
    /// `"http"` or `"https"`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain(_) => "http",
            Transport::Tls(_) => "https",
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The client's side of a connection upgraded to h2c: reads pass the client's preface and
/// first SETTINGS frame through, then yield `frame` (stream 1's HEADERS, built from the request
/// that asked for the upgrade; see `switchyard_wire::h2c`), then the rest of the stream.
#[derive(Debug)]
pub struct SpliceStreamOne<S> {
    inner: S,
    state: Splicing,
}

#[derive(Debug)]
enum Splicing {
    /// Reading the client's first bytes until the insertion point is known.
    Looking {
        seen: BytesMut,
        frame: bytes::Bytes,
    },
    /// Handing out what was read, with the frame in its place.
    Replaying(BytesMut),
    Passing,
}

/// Bytes read at a time while looking for the insertion point.
const SPLICE_READ: usize = 4096;

impl<S> SpliceStreamOne<S> {
    pub fn new(inner: S, frame: bytes::Bytes) -> Self {
        SpliceStreamOne {
            inner,
            state: Splicing::Looking {
                seen: BytesMut::new(),
                frame,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SpliceStreamOne<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use switchyard_wire::h2c::{Splice, splice_at};
        let this = &mut *self;
        loop {
            match &mut this.state {
                Splicing::Passing => return Pin::new(&mut this.inner).poll_read(cx, buf),
                Splicing::Replaying(queue) => {
                    if queue.is_empty() {
                        this.state = Splicing::Passing;
                        continue;
                    }
                    let n = queue.len().min(buf.remaining());
                    buf.put_slice(&queue.split_to(n));
                    return Poll::Ready(Ok(()));
                }
                Splicing::Looking { seen, frame } => {
                    match splice_at(seen) {
                        Splice::At(at) => {
                            let mut queue = BytesMut::with_capacity(seen.len() + frame.len());
                            queue.extend_from_slice(&seen[..at]);
                            queue.extend_from_slice(frame);
                            queue.extend_from_slice(&seen[at..]);
                            this.state = Splicing::Replaying(queue);
                            continue;
                        }
                        Splice::Never => {
                            this.state = Splicing::Replaying(std::mem::take(seen));
                            continue;
                        }
                        Splice::NeedMore => {}
                    }
                    let mut chunk = [0u8; SPLICE_READ];
                    let mut read = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) if read.filled().is_empty() => {
                            // EOF before the preface completed: hand over what came.
                            this.state = Splicing::Replaying(std::mem::take(seen));
                        }
                        Poll::Ready(Ok(())) => seen.extend_from_slice(read.filled()),
                    }
                }
            }
        }
    }
}

delegate_async_write!(SpliceStreamOne, inner);

#[cfg(test)]
mod splice_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn stream_one_goes_after_the_first_settings_frame_whatever_the_read_sizes() {
        let mut client_bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        client_bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        client_bytes.extend_from_slice(b"NEXT-FRAME");
        let (mut client, server) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            for byte in client_bytes {
                client.write_all(&[byte]).await.expect("write");
            }
        });
        let mut stream = SpliceStreamOne::new(server, bytes::Bytes::from_static(b"<FRAME>"));
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.expect("read");
        writer.await.expect("writer");
        let at = 24 + 9 + 6;
        assert_eq!(&all[at..at + 7], b"<FRAME>");
        assert_eq!(&all[at + 7..], b"NEXT-FRAME");
    }
}
