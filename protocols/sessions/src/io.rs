//! Byte-stream plumbing shared by the sessions.
//!
//! The acceptor reads the first bytes of a connection to sniff its protocol. Sessions that
//! parse with our own codec (HTTP/1.1) take those bytes as the start of their read buffer;
//! sessions driven by a library that owns the stream (TLS, HTTP/2) get a [`Prefixed`] stream
//! that replays them before reading from the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream and whatever of the prefix has not been read yet.
    pub fn into_parts(self) -> (BytesMut, S) {
        (self.prefix, self.inner)
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
