//! The service manager's readiness protocol (systemd's `sd_notify(3)`), for `Type=notify`
//! units: one datagram of `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET`.
//!
//! - `READY=1` once every listener is bound and the signal handlers are in place, so that
//!   `systemctl start` returns when the server answers;
//! - `RELOADING=1` with `MONOTONIC_USEC` when a SIGHUP is taken, then `READY=1` when the reload
//!   is applied or refused (its `STATUS=` says which), so that `systemctl reload` waits for it;
//! - `STOPPING=1` when the drain starts.
//!
//! Without `$NOTIFY_SOCKET` (not started by a service manager) nothing is sent. A datagram that
//! cannot be sent is logged at debug level and otherwise ignored: telling the manager is never
//! a reason to stop serving.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Where the datagrams go, read once from `$NOTIFY_SOCKET` at start.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::ffi::OsString)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`: a path, or an abstract socket name written with a leading `@`.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let socket = UnixDatagram::unbound()
                .inspect_err(|e| tracing::debug!(error = %e, "NOTIFY_SOCKET: no socket"))
                .ok()?;
            Some((socket, name))
        });
        Notifier { socket }
    }

    /// Send `state`, lines of `KEY=VALUE`.
    pub fn send(&self, state: &str) {
        let Some((socket, name)) = &self.socket else {
            return;
        };
        if let Err(e) = send_to(socket, name, state.as_bytes()) {
            tracing::debug!(error = %e, "NOTIFY_SOCKET: not sent");
        }
    }

    /// Ready, with `status` for `systemctl status` (one line: newlines become spaces, as the
    /// protocol is one assignment per line).
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", status.replace('\n', " ")));
    }

    /// A reload starts: the manager waits for the next [`Notifier::ready`].
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining");
    }
}

fn send_to(socket: &UnixDatagram, name: &std::ffi::OsStr, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    match name.as_bytes().strip_prefix(b"@") {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            socket.send_to_addr(bytes, &addr)
        }
        None => socket.send_to(bytes, Path::new(name)),
    }
    .map(drop)
}
