//! The access log: one line per answered request, in NCSA combined format or JSON.
//!
//! Sessions format the line on their own thread and hand it to a writer thread over a bounded
//! channel, so a slow disk never stalls a request. When the channel is full the line is dropped
//! and counted (`dropped`), rather than queueing without limit.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use switchyard_conf::{AccessFormat, LogTarget};

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// A cheap handle on the access log writer.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    format: AccessFormat,
    dropped: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
}

/// What one log line says about a request.
#[derive(Debug)]
pub struct AccessEntry<'a> {
    pub peer: SocketAddr,
    pub time: SystemTime,
    pub method: &'a str,
    /// Path and query as the client sent them.
    pub target: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub duration: Duration,
    pub host: Option<&'a str>,
}

impl AccessLog {
    /// Whether `other` is this log (the same writer), not one opened again.
    pub fn same(&self, other: &AccessLog) -> bool {
        Arc::ptr_eq(&self.dropped, &other.dropped)
    }

    /// Open the target and start the writer thread.
    pub fn open(cfg: &switchyard_conf::AccessLog) -> io::Result<AccessLog> {
        let (out, path): (Box<dyn Write + Send>, _) = match &cfg.target {
            LogTarget::Stderr => (Box::new(io::stderr()), None),
            LogTarget::Stdout => (Box::new(io::stdout()), None),
            LogTarget::File(path) => (Box::new(append_to(path)?), Some(path.clone())),
        };
        let (tx, rx) = sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let target = Target {
            out,
            path,
            reopen: reopen.clone(),
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, target))?;
        Ok(AccessLog {
            tx,
            format: cfg.format,
            dropped: Arc::default(),
            reopen,
        })
    }

    /// SIGUSR1: reopen the log file by its path before the next line (after a rotation moved
    /// the old one away). Nothing for stderr or stdout.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn record(&self, entry: &AccessEntry<'_>) {
        let line = match self.format {
            AccessFormat::Combined => combined(entry),
            AccessFormat::Json => json(entry),
        };
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn append_to(path: &std::path::Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Where the writer thread writes, and how to reopen it.
struct Target {
    out: Box<dyn Write + Send>,
    /// The file's path, when the log is a file.
    path: Option<std::path::PathBuf>,
    /// Set by [`AccessLog::reopen`]; honoured before the next batch is written.
    reopen: Arc<AtomicBool>,
}

/// The writer thread: write what is queued, flush whenever the queue runs dry.
fn write_lines(rx: Receiver<String>, target: Target) {
    let Target { out, path, reopen } = target;
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        if reopen.swap(false, Ordering::AcqRel) {
            if let Some(path) = &path {
                let _ = out.flush();
                match append_to(path) {
                    Ok(file) => out = BufWriter::with_capacity(64 * 1024, Box::new(file)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot reopen the access log; still writing to the old file")
                    }
                }
            }
        }
        let mut result = out.write_all(line.as_bytes());
        loop {
            match rx.try_recv() {
                Ok(line) => result = result.and_then(|()| out.write_all(line.as_bytes())),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "access log write failed");
        }
    }
    let _ = out.flush();
}

/// `127.0.0.1 - - [22/Nov/2026:01:03:49 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/7.88.1"`
/// A request refused before its line was understood is logged as `"-"`.
fn combined(e: &AccessEntry<'_>) -> String {
    let time = clf_time(e.time);
    let request = if e.method == "-" {
        "-".to_owned()
    } else {
        format!(
            "{} {} {}",
            escape_clf(e.method),
            escape_clf(e.target),
            e.protocol
        )
    };
    format!(
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
        e.peer.ip(),
        time,
        request,
        e.status,
        e.bytes,
        escape_clf(e.referer.unwrap_or("-")),
        escape_clf(e.user_agent.unwrap_or("-")),
    )
}

fn json(e: &AccessEntry<'_>) -> String {
    let value = serde_json::json!({
        "time": humantime::format_rfc3339_millis(e.time).to_string(),
        "remote_addr": e.peer.ip().to_string(),
        "method": e.method,
        "target": e.target,
        "protocol": e.protocol,
        "host": e.host,
        "status": e.status,
        "bytes": e.bytes,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "duration_ms": e.duration.as_secs_f64() * 1000.0,
    });
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// `22/Nov/2026:01:03:49 +0000`, derived from the RFC 3339 form (UTC).
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = humantime::format_rfc3339_seconds(time).to_string(); // 2026-11-22T01:03:49Z
    let (date, clock) = iso.split_once('T').unwrap_or((&iso, "00:00:00Z"));
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (
        parts.next().unwrap_or("1970"),
        parts.next().unwrap_or("01"),
        parts.next().unwrap_or("01"),
    );
    let month = month
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!("{day}/{month}/{year}:{} +0000", clock.trim_end_matches('Z'))
}

/// Quotes and control bytes are escaped so a client cannot forge log lines.
fn escape_clf(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AccessEntry<'static> {
        AccessEntry {
            peer: "127.0.0.1:5000".parse().expect("literal"),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_309_429),
            method: "GET",
            target: "/a\"b?x=1",
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 612,
            referer: None,
            user_agent: Some("curl/8\n"),
            duration: Duration::from_millis(3),
            host: Some("localhost"),
        }
    }

    #[test]
    fn combined_line_escapes_quotes_and_controls() {
        let line = combined(&entry());
        assert_eq!(
            line,
            "127.0.0.1 - - [22/Nov/2026:01:03:49 +0000] \"GET /a\\\"b?x=1 HTTP/1.1\" 200 612 \"-\" \"curl/8\\x0a\"\n"
        );
    }

    #[test]
    fn json_line_is_one_object() {
        let line = json(&entry());
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("valid JSON");
        assert_eq!(v["status"], 200);
        assert_eq!(v["target"], "/a\"b?x=1");
        assert_eq!(v["time"], "2026-11-22T01:03:49.000Z");
    }

    #[test]
    fn a_refused_request_logs_a_dash_for_its_line() {
        let refused = AccessEntry {
            method: "-",
            target: "-",
            protocol: "-",
            status: 400,
            ..entry()
        };
        assert!(
            combined(&refused).contains("] \"-\" 400 612 "),
            "{}",
            combined(&refused)
        );
    }
}
