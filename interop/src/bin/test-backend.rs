//! A small HTTP/1.1 member for the proxy tests, with behaviours nginx cannot be asked for.
//!
//! `test-backend NAME [PORT]` listens on 127.0.0.1:PORT (0 = any), prints `listening on ADDR`,
//! and answers, with keep-alive:
//!
//! | request                | answer                                                       |
//! |------------------------|--------------------------------------------------------------|
//! | `GET /` (anything else)| 200, body NAME                                               |
//! | `/status/N?only=NAME`  | status N if NAME is ours (or no `only`), else 200            |
//! | `/slow/MS`             | waits MS milliseconds, then 200 NAME                         |
//! | `/reset`               | closes the connection without answering                      |
//! | `/truncate?only=NAME`  | announces 1000 bytes, sends 10, closes (others: 200 NAME)    |
//! | `/garbage`             | answers bytes that are not HTTP                              |
//! | `/conns`               | the number of connections accepted so far                    |
//! | `/open`                | the number of connections open now                           |
//! | `/bytes/N`             | N bytes (a repeating pattern), Content-Length                |
//! | `/sink` (with a body)  | reads the body (Content-Length or chunked), answers its size |
//! | `/headers`             | the request head as received                                 |
//! | `/health`              | 200, or 503 after `/health/down` (until `/health/up`)        |
//! | `/ws` with Upgrade     | 101, then echoes every byte back until the client closes     |
//! | `/refuse`              | 413 and close, without reading the request body              |
//! | `/both`                | chunked "hello" that also announces `Content-Length: 3`      |
//! | `/badlength`           | `Content-Length: 5, 6` (conflicting values)                  |
//! | `/trailers`            | chunked body `hello`, then the trailer `grpc-status: 0`      |

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

struct State {
    name: String,
    conns: AtomicU64,
    open: AtomicU64,
    healthy: AtomicBool,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "backend".to_owned());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let state = Arc::new(State {
        name,
        conns: AtomicU64::new(0),
        open: AtomicU64::new(0),
        healthy: AtomicBool::new(true),
    });
    let addr = listener.local_addr().expect("local addr");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    drop(out);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        state.conns.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        std::thread::spawn(move || {
            let _ = serve(stream, &state);
            state.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let mut head = line.clone();
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = false;
        let mut upgrade = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            head.push_str(&h);
            let t = h.trim_end();
            if t.is_empty() {
                break;
            }
            if let Some((k, v)) = t.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    "upgrade" => upgrade = true,
                    _ => {}
                }
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match path {
            // Refuses an upload without reading it, as a server enforcing a body limit does.
            "/refuse" => {
                writer.write_all(
                    b"HTTP/1.1 413 Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\nrefused",
                )?;
                // A lingering close, as nginx does: closing with the body unread would reset
                // the connection, and a reset may discard the answer before the peer reads it.
                writer.shutdown(std::net::Shutdown::Write)?;
                let _ = writer.set_read_timeout(Some(Duration::from_secs(5)));
                let mut sink = reader.into_inner();
                let mut buf = [0u8; 64 * 1024];
                while matches!(sink.read(&mut buf), Ok(n) if n > 0) {}
                return Ok(());
            }
            // Both framings: the chunked coding wins, and the connection must not be reused.
            "/both" => {
                read_body(&mut reader, length, chunked)?;
                writer.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5\r\nhello\r\n0\r\n\r\n",
                )?;
                continue;
            }
            "/badlength" => {
                read_body(&mut reader, length, chunked)?;
                writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello")?;
                continue;
            }
            _ => {}
        }
        let body_len = read_body(&mut reader, length, chunked)?;
        let name = &state.name;
        let mut status = 200u16;
        let mut body: Vec<u8> = name.clone().into_bytes();
        match path {
            "/reset" => return Ok(()),
            "/trailers" => {
                writer.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n\
                      5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n",
                )?;
                continue;
            }
            "/truncate" if query.strip_prefix("only=").is_none_or(|o| o == name) => {
                writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")?;
                return Ok(());
            }
            "/garbage" => {
                writer.write_all(b"SSH-2.0-OpenSSH\r\n\r\n")?;
                return Ok(());
            }
            "/conns" => body = state.conns.load(Ordering::SeqCst).to_string().into_bytes(),
            "/open" => body = state.open.load(Ordering::SeqCst).to_string().into_bytes(),
            "/sink" => body = body_len.to_string().into_bytes(),
            "/headers" => body = head.into_bytes(),
            "/health" => {
                if !state.healthy.load(Ordering::SeqCst) {
                    status = 503;
                }
            }
            "/health/down" => state.healthy.store(false, Ordering::SeqCst),
            "/health/up" => state.healthy.store(true, Ordering::SeqCst),
            "/ws" if upgrade => {
                writer.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                )?;
                // Bytes the client sent right after its head are in the reader's buffer.
                let buffered = reader.buffer().to_vec();
                writer.write_all(&buffered)?;
                let mut inner = reader.into_inner();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = inner.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    writer.write_all(&buf[..n])?;
                }
            }
            _ => {
                if let Some(code) = path.strip_prefix("/status/") {
                    let only = query.strip_prefix("only=");
                    if only.is_none_or(|o| o == name) {
                        status = code.parse().unwrap_or(500);
                    }
                } else if let Some(ms) = path.strip_prefix("/slow/") {
                    std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(1000)));
                } else if let Some(n) = path.strip_prefix("/bytes/") {
                    let n: u64 = n.parse().unwrap_or(0);
                    write!(
                        writer,
                        "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nX-Member: {name}\r\n\r\n"
                    )?;
                    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(chunk.len() as u64) as usize;
                        writer.write_all(&chunk[..k])?;
                        left -= k as u64;
                    }
                    if close {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if method == "HEAD" {
            body.clear();
        }
        write!(
            writer,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Member: {name}\r\nContent-Type: text/plain\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        writer.write_all(&body)?;
        if close {
            return Ok(());
        }
    }
}

/// Read and count a request body.
fn read_body(
    reader: &mut BufReader<TcpStream>,
    length: Option<u64>,
    chunked: bool,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    if chunked {
        let mut total = 0;
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n =
                u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        return Ok(total);
                    }
                }
            }
            let mut left = n;
            while left > 0 {
                let k = left.min(buf.len() as u64) as usize;
                reader.read_exact(&mut buf[..k])?;
                left -= k as u64;
            }
            total += n;
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    }
    let n = length.unwrap_or(0);
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        reader.read_exact(&mut buf[..k])?;
        left -= k as u64;
    }
    Ok(n)
}
