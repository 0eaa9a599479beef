//! Black-box test helpers: start the built `switchyard` binary on a free loopback port and talk to
//! it the way an operator and a client would.
//!
//! Nothing here links against Switchyard's own crates. The tests see only the binary, its command
//! line, its readiness line on stdout (`listening on ADDR`), its exit status and the bytes on the
//! wire. Clients are real and independent: `std::net::TcpStream` for byte-exact framing cases and
//! `curl` for everything a browser-like client would do. Traffic never leaves loopback.
//!
//! The helpers panic with a message instead of returning errors: a test that cannot start the
//! server or reach it has failed, and the message (plus the server's stderr, printed when a test
//! panics while a [`Server`] is alive) says why.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use tempfile::TempDir;

/// How long the server may take to print its `listening on` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on any single wait for a response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous upper bound when waiting for the server to close a connection on a timeout.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Locating the binary
// ---------------------------------------------------------------------------------------------

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().expect("interop/ has a parent").to_path_buf()
}

/// The `switchyard` binary under test: `$SWITCHYARD_BIN`, else the release build, else the debug
/// build of the workspace's target directory (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SWITCHYARD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SWITCHYARD_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    };
    for profile in ["release", "debug"] {
        let bin = target.join(profile).join("switchyard");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "the switchyard binary was not found under {}/{{release,debug}}/; \
         run `cargo build --release -p switchyard` first (or set SWITCHYARD_BIN)",
        target.display()
    );
}

// ---------------------------------------------------------------------------------------------
// The server guard
// ---------------------------------------------------------------------------------------------

/// How to start one server process. Build with [`Server::serve`], [`Server::run_config`] or
/// [`Server::command`], adjust, then [`ServerBuilder::start`].
#[derive(Debug)]
pub struct ServerBuilder {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    listeners: usize,
    dir: TempDir,
}

impl ServerBuilder {
    /// Add a command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Set an environment variable for the server process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// How many `listening on` lines to wait for (one per configured listener). Default 1.
    pub fn listeners(mut self, n: usize) -> Self {
        self.listeners = n;
        self
    }

    /// The scratch directory this server owns (config files, stderr log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Start the process and wait (bounded) until it has printed every `listening on` line.
    pub fn start(self) -> Server {
        let bin = binary();
        let stderr_path = self.dir.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let mut cmd = Command::new(&bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                    lines.lock().expect("stdout lines lock").push(line);
                }
            });
        }
        let mut server = Server {
            child,
            addrs: Vec::new(),
            stdout: lines,
            stderr_path,
            dir: self.dir,
            args: self.args,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while server.addrs.len() < self.listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(text) => {
                    let addr = text.parse().unwrap_or_else(|e| {
                        panic!("unparsable readiness line `listening on {text}`: {e}")
                    });
                    server.addrs.push(addr);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.wait_exit(Duration::from_secs(5));
                    panic!(
                        "switchyard {:?} closed stdout before printing `listening on ADDR` \
                         (exit status: {status:?}); stderr:\n{}",
                        server.args,
                        server.stderr()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "switchyard {:?} did not print `listening on ADDR` within {READY_TIMEOUT:?}; \
                     stderr:\n{}",
                    server.args,
                    server.stderr()
                ),
            }
        }
        server
    }
}

/// A running `switchyard` process, killed (by PID) when dropped.
///
/// When the test panics while a `Server` is alive, its stderr is printed, so a failing test shows
/// the server's side of the story.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addrs: Vec<SocketAddr>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr_path: PathBuf,
    dir: TempDir,
    args: Vec<OsString>,
}

impl Server {
    /// `switchyard ARGS...` with nothing added.
    pub fn command<I, S>(args: I) -> ServerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ServerBuilder {
            args: args.into_iter().map(Into::into).collect(),
            envs: Vec::new(),
            listeners: 1,
            dir: tempfile::Builder::new()
                .prefix("switchyard-server-")
                .tempdir()
                .expect("create server scratch dir"),
        }
    }

    /// `switchyard serve ROOT --listen 127.0.0.1:0`.
    pub fn serve(root: &Path) -> ServerBuilder {
        Server::command([
            OsString::from("serve"),
            root.as_os_str().to_owned(),
            OsString::from("--listen"),
            OsString::from("127.0.0.1:0"),
        ])
    }

    /// `switchyard run -c FILE` where FILE holds `toml` (written into the server's scratch dir).
    pub fn run_config(toml: &str) -> ServerBuilder {
        let builder = Server::command(Vec::<OsString>::new());
        let path = builder.dir().join("switchyard.toml");
        fs::write(&path, toml).expect("write config");
        builder.arg("run").arg("-c").arg(path)
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listening address, in the order printed.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's scratch directory (config file, stderr log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Every line the server wrote to stdout so far (readiness lines included).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines lock").clone()
    }

    /// Send `signal` (e.g. [`Signal::TERM`], [`Signal::INT`]) to the server's PID.
    pub fn signal(&self, signal: Signal) {
        let raw = i32::try_from(self.pid()).expect("pid fits i32");
        let pid = rustix::process::Pid::from_raw(raw).expect("non-zero pid");
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("kill({raw}, {signal:?}) failed: {e}"));
    }

    /// Wait (bounded) for the process to exit; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// A fresh connection to the first listener.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr())
    }

    /// `GET path` on a fresh connection (`Connection: close`), the simplest "still serving?" probe.
    pub fn get(&self, path: &str) -> Response {
        let mut conn = self.connect();
        conn.send(get_close(path).as_bytes());
        conn.read_response()
    }

    /// Assert the server answers `GET path` with 200 and `body` on a fresh connection.
    pub fn assert_serves(&self, path: &str, body: &[u8]) {
        let resp = self.get(path);
        assert_eq!(resp.status, 200, "server no longer serves {path}: {resp:?}");
        assert_eq!(resp.body, body, "server serves wrong bytes for {path}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.stderr();
            let tail: String = {
                let start = log.len().saturating_sub(8000);
                let start = (start..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(log.len());
                log[start..].to_owned()
            };
            eprintln!(
                "---- switchyard {:?} stderr (tail) ----\n{tail}\n----",
                self.args
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration files
// ---------------------------------------------------------------------------------------------

/// A TOML basic string holding `path`.
pub fn toml_path(path: &Path) -> String {
    toml_str(&path.to_string_lossy())
}

/// A TOML basic string holding `s`.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A minimal config: `extra` first (top-level keys such as `workers`, then tables such as
/// `[limits]` or `[timeouts]`), then one loopback listener on a free port, one vhost and one
/// files location for `root` at `/`. `location_extra` lines go inside the location table
/// (`autoindex = true`, ...).
pub fn config(root: &Path, location_extra: &str, extra: &str) -> String {
    format!(
        "{extra}\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[vhost]]\nnames = [\"*\"]\n\n\
         [[vhost.location]]\npath = \"/\"\nroot = {}\n{location_extra}\n",
        toml_path(root)
    )
}

/// Run `switchyard check -c PATH` and return its output.
pub fn check(path: &Path) -> Output {
    Command::new(binary())
        .args(["check", "-c"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard check")
}

// ---------------------------------------------------------------------------------------------
// Web roots
// ---------------------------------------------------------------------------------------------

/// A temporary directory tree with a web root inside it, so that files *outside* the root exist
/// (for traversal tests): `<tmp>/www` is the root, `<tmp>` is outside.
#[derive(Debug)]
pub struct WebRoot {
    dir: TempDir,
    root: PathBuf,
}

impl Default for WebRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl WebRoot {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-www-")
            .tempdir()
            .expect("create web root");
        let root = dir.path().join("www");
        fs::create_dir(&root).expect("create www");
        // Tests compare paths with what the server canonicalised; resolve /tmp symlinks now.
        let root = root.canonicalize().expect("canonicalize root");
        WebRoot { dir, root }
    }

    /// The served directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that contains the root (outside of it).
    pub fn outside(&self) -> &Path {
        self.dir.path()
    }

    /// Write `rel` (relative to the root) with `contents`, creating parent directories.
    pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self
    }

    /// Create directory `rel` (and parents) under the root.
    pub fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.root.join(rel)).expect("create dir");
        self
    }

    /// Create a symbolic link at `rel` (under the root) pointing to `target` (used verbatim).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.root.join(rel)).expect("create symlink");
        self
    }

    /// Set the modification time of `rel`.
    pub fn set_mtime(&self, rel: &str, mtime: std::time::SystemTime) -> &Self {
        let file = File::options()
            .write(true)
            .open(self.root.join(rel))
            .expect("open for set_modified");
        file.set_modified(mtime).expect("set mtime");
        self
    }

    /// Absolute path of `rel` under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64*), different for each `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// SHA-256 of `bytes`, in hex (computed by coreutils' `sha256sum`).
pub fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("sha256sum output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to sha256sum");
    first_word(&out.stdout)
}

/// SHA-256 of the file at `path`, in hex.
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    first_word(&out.stdout)
}

fn first_word(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------------------------

/// `GET path HTTP/1.1` with `Host: localhost`, keep-alive.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// `GET path HTTP/1.1` with `Host: localhost` and `Connection: close`.
pub fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Field lines in order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// Whether the body was chunked on the wire.
    pub chunked: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a comma-separated header (e.g. `Connection`, `Vary`) contains `token`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a wait for the server to close a connection ended.
#[derive(Debug)]
pub struct Closed {
    /// Bytes the server sent before closing (e.g. a 408 or 400 response), possibly empty.
    pub bytes: Vec<u8>,
    /// Whether the connection was closed (EOF or reset) before the bound.
    pub closed: bool,
    /// Time from the start of the wait to the close (or the bound).
    pub elapsed: Duration,
}

impl Closed {
    /// The status of the response the server sent before closing, if it sent one.
    pub fn status(&self) -> Option<u16> {
        parse_head(&self.bytes).map(|(head, _)| head.status)
    }
}

/// One client connection with its own read buffer, so pipelined responses parse in sequence.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connect (bounded) to `addr`.
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connect (bounded) to `addr`, or `None` if the connection is refused or times out.
    pub fn open_or_none(addr: SocketAddr) -> Option<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
        stream.set_nodelay(true).ok()?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
        Some(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Write all of `bytes` in one `write_all`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to server");
    }

    /// Write `bytes`, reporting failure (the server may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Send `request` and read one response.
    pub fn request(&mut self, request: &str) -> Response {
        self.send(request.as_bytes());
        self.read_response()
    }

    /// Close our sending half (the server sees EOF after what we sent).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Read one response to a non-HEAD request, bounded by [`IO_TIMEOUT`].
    pub fn read_response(&mut self) -> Response {
        self.read_response_within(false, IO_TIMEOUT)
    }

    /// Read one response to a HEAD request (no body whatever the headers say).
    pub fn read_head_response(&mut self) -> Response {
        self.read_response_within(true, IO_TIMEOUT)
    }

    /// Read one response, panicking with what was received if it is incomplete by `bound`.
    pub fn read_response_within(&mut self, head_only: bool, bound: Duration) -> Response {
        match self.try_read_response(head_only, bound) {
            Ok(Some(resp)) => resp,
            Ok(None) => panic!("server closed the connection without a response"),
            Err(e) => panic!(
                "no complete response within {bound:?}: {e}; received {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Read one response; `Ok(None)` if the server closed cleanly before sending any byte.
    pub fn try_read_response(
        &mut self,
        head_only: bool,
        bound: Duration,
    ) -> io::Result<Option<Response>> {
        let deadline = Instant::now() + bound;
        let (mut resp, head_len) = loop {
            if let Some(parsed) = parse_head(&self.buf) {
                break parsed;
            }
            if self.fill(deadline)? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside head",
                ));
            }
        };
        self.buf.drain(..head_len);
        let no_body =
            head_only || (100..200).contains(&resp.status) || matches!(resp.status, 204 | 304);
        if no_body {
            return Ok(Some(resp));
        }
        let te = resp
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te
            .as_deref()
            .is_some_and(|te| te.trim_end().ends_with("chunked"))
        {
            resp.chunked = true;
            resp.body = self.read_chunked(deadline)?;
        } else if let Some(cl) = resp.header("content-length") {
            let len: usize = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length {cl:?}"),
                )
            })?;
            while self.buf.len() < len {
                if self.fill(deadline)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF after {} of {len} body bytes", self.buf.len()),
                    ));
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill(deadline)? != 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(Some(resp))
    }

    fn read_chunked(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailer section, ended by an empty line.
                while !self.read_line(deadline)?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill(deadline)? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk"));
                }
            }
            body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).as_slice() != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not ended by CRLF",
                ));
            }
        }
    }

    fn read_line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in chunked line",
                ));
            }
        }
    }

    /// Read more bytes into the buffer before `deadline`; 0 means EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
            }
            Err(e) => Err(e),
        }
    }

    /// Read exactly `n` raw bytes (after whatever is buffered), bounded by `bound`.
    pub fn read_exact_raw(&mut self, n: usize, bound: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + bound;
        while self.buf.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Bytes received but not yet consumed by a parsed response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Wait up to `bound` for the server to close the connection, collecting whatever it sends
    /// first (a 400/408 response, say). A reset counts as closed.
    pub fn wait_closed(&mut self, bound: Duration) -> Closed {
        let start = Instant::now();
        let deadline = start + bound;
        loop {
            match self.fill(deadline) {
                Ok(0) => {
                    break Closed {
                        bytes: std::mem::take(&mut self.buf),
                        closed: true,
                        elapsed: start.elapsed(),
                    };
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    break Closed {
                        bytes: std::mem::take(&mut self.buf),
                        closed: false,
                        elapsed: start.elapsed(),
                    };
                }
                Err(_) => {
                    break Closed {
                        bytes: std::mem::take(&mut self.buf),
                        closed: true,
                        elapsed: start.elapsed(),
                    };
                }
            }
        }
    }

    /// Whether the connection is still open after `wait` with nothing received (a negative check:
    /// used to show that something did *not* happen, so it has to wait).
    pub fn stays_open_for(&mut self, wait: Duration) -> bool {
        let closed = self.wait_closed(wait);
        !closed.closed && closed.bytes.is_empty()
    }
}

/// Parse a response head from the front of `buf`: the response (without body) and the head length.
pub fn parse_head(buf: &[u8]) -> Option<(Response, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?.to_owned();
    let status = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect();
    Some((
        Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
        },
        end + 4,
    ))
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

/// What curl received: the final response (after any 1xx) and curl's own exit status.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    /// curl's exit code (0 = transfer fine, whatever the HTTP status).
    pub exit: i32,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlOutput {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Run `curl -sS -D - -o BODYFILE ARGS...` (bounded to 60 s) and parse the last header block.
pub fn curl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> CurlOutput {
    let scratch = tempfile::tempdir().expect("curl scratch dir");
    let body_path = scratch.path().join("body");
    let mut out = curl_to(&body_path, args);
    out.body = fs::read(&body_path).unwrap_or_default();
    out
}

/// Like [`curl`], but the body goes to `dest` (e.g. a large download, or `/dev/null`) and
/// [`CurlOutput::body`] stays empty.
pub fn curl_to<S: AsRef<std::ffi::OsStr>>(dest: &Path, args: &[S]) -> CurlOutput {
    let body_path = dest;
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-D", "-", "-o"])
        .arg(body_path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl (is it installed? interop/test.sh installs it)");
    let headers_text = String::from_utf8_lossy(&out.stdout).into_owned();
    // With -D -, each response's head (1xx, redirects) is printed; keep the last one.
    let blocks: Vec<&str> = headers_text
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .collect();
    let last = blocks.last().copied().unwrap_or("");
    let mut lines = last.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect();
    CurlOutput {
        exit: out.status.code().unwrap_or(-1),
        status,
        headers,
        body: Vec::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Members for the proxy tests
// ---------------------------------------------------------------------------------------------

/// A `test-backend` process (this crate's `src/bin/test-backend.rs`), killed when dropped.
#[derive(Debug)]
pub struct Backend {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Backend {
    /// Start a member answering `name` on a free loopback port.
    pub fn start(name: &str) -> Backend {
        Backend::start_on(name, 0)
    }

    /// Start a member answering `name` on `port` (0: a free one); returns once it listens.
    pub fn start_on(name: &str, port: u16) -> Backend {
        let mut child = Command::new(test_backend_binary())
            .arg(name)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start test-backend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("readiness line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected readiness line {line:?}"))
            .parse()
            .expect("address");
        Backend {
            child: Some(child),
            addr,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kill it now (SIGKILL: its sockets close without a goodbye).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A request straight to the member, bypassing the proxy.
    pub fn direct(&self, path: &str) -> String {
        let mut conn = Conn::open(self.addr);
        conn.request(&get(path)).text()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `test-backend`, built by cargo beside the test executables: a test runs from
/// `<target>/<profile>/deps/`, the crate's binaries sit one level up.
fn test_backend_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let bin = profile_dir.join("test-backend");
    assert!(
        bin.is_file(),
        "{} not found: build it with `cargo build --release -p switchyard-interop`",
        bin.display()
    );
    bin
}

/// A self-signed certificate for `names` (the first is the subject CN; all are DNS names in the
/// subjectAltName), made by `openssl req` and written as `<dir>/<stem>.pem` and
/// `<dir>/<stem>.key`.
pub fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={}", names[0]))
        .arg("-addext")
        .arg(format!("subjectAltName={}", sans.join(",")))
        // webpki refuses a CA certificate as the end entity (HTTPS members are verified).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (interop/test.sh installs it)");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// Stop a child process with SIGTERM and reap it: for servers whose own children (nginx's
/// workers) must be stopped by them.
pub fn terminate(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, Signal::TERM);
    }
    let _ = child.wait();
}

/// The value of the sample `series` (a metric's name and labels, as written) in a Prometheus
/// text exposition; panics, showing the text, when it is not there.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// Wait (bounded by [`IO_TIMEOUT`]) until the file at `path` has at least `n` lines (an access
/// log written by another thread of the server), and return its lines.
pub fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback TCP port (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Poll `ok` every 20 ms until it holds; panics naming `what` after `bound`. For conditions
/// that have no readiness signal of their own (another process's state seen from outside).
pub fn wait_until(bound: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
