//! Following the client's CPU: a plain HTTP/1.1 connection served by a worker other than the
//! one paired with the CPU its requests arrive on moves to that worker, between two requests.
//!
//! Connection steering (the acceptors' `SO_INCOMING_CPU`) pairs a connection with a worker once,
//! when it is accepted, by the CPU that received its handshake. Clients do not always open their
//! connections from the CPU they then use them from: wrk opens all its connections before its
//! threads settle, sometimes all from one CPU, and a connection the balance valve hashed is
//! paired by chance. Such a connection wakes its worker on another CPU for every request, and
//! when one worker holds every connection it serves everything from one core (about half the
//! requests per second of a paired run).
//!
//! So every [`PERIOD`] requests an idle connection reads the CPU its last request arrived on
//! (`SO_INCOMING_CPU` of the connected socket: one system call). When two looks in a row name
//! the same other worker, and moving does not load that worker more than the acceptors' balance
//! margin allows, the connection leaves its worker's reactor and is handed to the other worker,
//! which serves its next request. Nothing is buffered at that point (the answer was written,
//! no byte of the next request was read), so nothing but the socket and its counters moves. A
//! connection that moved looks less often each time it moves, so a client whose threads keep
//! changing CPUs cannot make it move often.
//!
//! Only plain HTTP/1.1 connections move: they are the ones a reverse proxy or a load generator
//! keeps busy with small requests, where the wakeups are the cost.
//!
//! Large bodies want the opposite. Over loopback the receiving side's TCP work runs on the
//! sender's CPU, and a download sent from the CPU its client reads on shares that CPU with the
//! client: 64 MiB arrive at about 1.7 GB/s, against 2.4-2.8 GB/s when the sender runs on another
//! CPU. Pairing makes that the usual case. So when a plain connection is about to `sendfile` a
//! range of at least [`BULK_MIN`] and its worker's thread runs on the CPU the request arrived
//! on, the sending is handed to a worker paired with another CPU ([`Bulk`]): it writes the
//! range through its own descriptor of the socket, and the connection waits for it, then goes on
//! as before.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use switchyard_services::message::FileRange;
use switchyard_services::workers::{OpenCounter, WorkerLoads};
use tokio::sync::{mpsc, oneshot};

use crate::env::{ConnGuard, Settings};
use crate::io::send_file;

/// Requests between two looks at a connection's CPU, before it has moved.
pub const PERIOD: u16 = 16;
/// Each move doubles the period, up to this many times.
const MAX_BACKOFF: u8 = 6;
/// Connections and bodies handed to a worker and not yet taken up by it.
pub const INBOX: usize = 1024;
/// Smallest file range sent by another worker when this one shares the client's CPU: the
/// hand-over costs some tens of microseconds, a 4 MiB range takes about two milliseconds.
pub const BULK_MIN: u64 = 4 << 20;

/// What one worker hands another.
#[derive(Debug)]
pub enum Handoff {
    /// A connection, to serve from now on.
    Connection(Moved),
    /// A file range to send on a connection it does not serve.
    Body(Bulk),
}

/// A file range for another worker to send on a connection (see the module's doc). The
/// connection's head is already in the socket, and the connection waits for `done`.
#[derive(Debug)]
pub struct Bulk {
    /// A descriptor of its own for the connection's socket.
    pub socket: std::net::TcpStream,
    pub range: FileRange,
    /// How long the client may accept nothing (`timeouts.send`).
    pub send_timeout: Duration,
    pub done: oneshot::Sender<io::Result<()>>,
}

impl Bulk {
    /// Send the range, on the worker it was handed to, then tell the connection. This worker's
    /// descriptor of the socket is closed (and out of its reactor) before the connection hears.
    pub async fn send(self) {
        let Bulk {
            socket,
            range,
            send_timeout,
            done,
        } = self;
        let sent = match tokio::net::TcpStream::from_std(socket) {
            Ok(stream) => send_file(&stream, &range, send_timeout).await,
            Err(e) => Err(e),
        };
        let _ = done.send(sent);
    }
}

/// A connection on its way to another worker.
#[derive(Debug)]
pub struct Moved {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    /// Already counted for the worker it goes to.
    pub guard: ConnGuard,
    /// The settings the connection was accepted with; it keeps them.
    pub settings: Settings,
    /// How many times it moved, this move included.
    pub moves: u8,
}

/// What one worker's connections of one listener need to move: which worker each CPU is
/// paired with, every worker's load, and the inboxes of that listener's acceptors.
#[derive(Debug)]
pub struct Follow {
    worker: usize,
    /// The workers paired with each CPU, indexed by CPU number.
    by_cpu: Rc<[Vec<usize>]>,
    loads: Arc<WorkerLoads>,
    inboxes: Rc<[mpsc::Sender<Handoff>]>,
}

impl Follow {
    /// `paired[w]` is the CPU worker `w` is paired with; `inboxes[w]` its acceptor's inbox for
    /// this listener.
    pub fn new(
        worker: usize,
        paired: &[Option<u32>],
        loads: Arc<WorkerLoads>,
        inboxes: Rc<[mpsc::Sender<Handoff>]>,
    ) -> Follow {
        Follow {
            worker,
            by_cpu: by_cpu(paired),
            loads,
            inboxes,
        }
    }

    /// The worker a connection whose requests arrive on `cpu` should move to, if any: none
    /// when this worker is paired with `cpu`, or when moving would load the other worker
    /// beyond the balance margin.
    pub fn destination(&self, cpu: u32) -> Option<usize> {
        let paired = self.by_cpu.get(usize::try_from(cpu).ok()?)?;
        if paired.contains(&self.worker) {
            return None;
        }
        let to = paired.iter().copied().min_by_key(|&w| self.loads.open(w))?;
        self.loads.may_move(self.worker, to).then_some(to)
    }

    /// The CPU the last request of `socket` arrived on.
    pub fn cpu_of(socket: impl AsFd) -> Option<u32> {
        rustix::net::sockopt::socket_incoming_cpu(socket).ok()
    }

    /// This worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The count a connection of `worker` keeps itself in.
    pub fn counter(&self, worker: usize) -> OpenCounter {
        self.loads.worker(worker).counter()
    }

    /// Hand `moved` to worker `to`; gives it back if that worker's inbox is full or closed.
    pub fn send(&self, to: usize, moved: Moved) -> Result<(), Moved> {
        match self.hand(to, Handoff::Connection(moved)) {
            Err(Handoff::Connection(moved)) => Err(moved),
            _ => Ok(()),
        }
    }

    /// The worker to send a large body on a connection whose requests arrive on `client_cpu`,
    /// when this worker's thread runs on that CPU now: the least loaded of those paired with
    /// another CPU.
    pub fn bulk_sender(&self, client_cpu: u32, running_on: usize) -> Option<usize> {
        if usize::try_from(client_cpu).ok()? != running_on {
            return None;
        }
        self.by_cpu
            .iter()
            .enumerate()
            .filter(|&(cpu, _)| cpu != running_on)
            .flat_map(|(_, workers)| workers.iter().copied())
            .filter(|&w| w != self.worker)
            .min_by_key(|&w| self.loads.open(w))
    }

    /// Hand `bulk` to worker `to`; gives it back if that worker's inbox is full or closed.
    pub fn send_body(&self, to: usize, bulk: Bulk) -> Result<(), Bulk> {
        match self.hand(to, Handoff::Body(bulk)) {
            Err(Handoff::Body(bulk)) => Err(bulk),
            _ => Ok(()),
        }
    }

    fn hand(&self, to: usize, handoff: Handoff) -> Result<(), Handoff> {
        match self.inboxes.get(to) {
            Some(inbox) => inbox.try_send(handoff).map_err(|e| match e {
                mpsc::error::TrySendError::Full(h) | mpsc::error::TrySendError::Closed(h) => h,
            }),
            None => Err(handoff),
        }
    }
}

fn by_cpu(paired: &[Option<u32>]) -> Rc<[Vec<usize>]> {
    let len = paired
        .iter()
        .flatten()
        .filter_map(|&c| usize::try_from(c).ok())
        .max()
        .map_or(0, |c| c + 1);
    let mut by_cpu = vec![Vec::new(); len];
    for (worker, cpu) in paired.iter().enumerate() {
        if let Some(slot) = cpu.and_then(|c| by_cpu.get_mut(usize::try_from(c).ok()?)) {
            slot.push(worker);
        }
    }
    by_cpu.into()
}

/// One connection's side of following: when to look, and what the last look saw.
#[derive(Debug, Clone, Copy)]
pub struct Follower {
    /// Requests until the next look.
    countdown: u16,
    /// The worker the last look named, if it named another.
    seen: Option<u16>,
    moves: u8,
}

impl Follower {
    /// A connection that has moved `moves` times. A new one looks after its first request.
    pub fn new(moves: u8) -> Follower {
        Follower {
            countdown: if moves == 0 { 0 } else { PERIOD },
            seen: None,
            moves,
        }
    }

    pub fn moves(&self) -> u8 {
        self.moves
    }

    /// Counts a request answered: whether to look at the connection's CPU now.
    pub fn due(&mut self) -> bool {
        if let Some(left) = self.countdown.checked_sub(1) {
            self.countdown = left;
            return false;
        }
        self.countdown = PERIOD << self.moves.min(MAX_BACKOFF);
        true
    }

    /// What a look found: `to` is the worker to move to by this look, if any. Returns the
    /// worker to move to now: the same one two looks in a row.
    pub fn saw(&mut self, to: Option<usize>) -> Option<usize> {
        let to = to.and_then(|w| u16::try_from(w).ok());
        let confirmed = to.is_some() && to == self.seen;
        self.seen = if confirmed { None } else { to };
        confirmed.then(|| usize::from(to.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(worker: usize, paired: &[Option<u32>], loads: &Arc<WorkerLoads>) -> Follow {
        let inboxes: Vec<_> = paired.iter().map(|_| mpsc::channel(1).0).collect();
        Follow::new(worker, paired, Arc::clone(loads), inboxes.into())
    }

    fn open(loads: &Arc<WorkerLoads>, worker: usize, n: usize) {
        for _ in 0..n {
            loads.worker(worker).counter().opened();
        }
    }

    #[test]
    fn a_connection_looks_after_its_first_request_then_every_period_longer_after_each_move() {
        let mut f = Follower::new(0);
        assert!(f.due(), "the first look is after the first request");
        for _ in 0..PERIOD {
            assert!(!f.due());
        }
        assert!(f.due());
        let mut moved = Follower::new(3);
        let mut answered = 0;
        while !moved.due() {
            answered += 1;
        }
        assert_eq!(
            answered, PERIOD,
            "a moved connection waits a period before its first look"
        );
        answered = 0;
        while !moved.due() {
            answered += 1;
        }
        assert_eq!(answered, PERIOD << 3);
        let mut restless = Follower::new(200);
        assert_eq!(restless.moves(), 200);
        while !restless.due() {}
        answered = 0;
        while !restless.due() {
            answered += 1;
        }
        assert_eq!(answered, PERIOD << MAX_BACKOFF, "the period stops growing");
    }

    #[test]
    fn it_moves_when_two_looks_in_a_row_name_the_same_worker() {
        let mut f = Follower::new(0);
        assert_eq!(f.saw(Some(1)), None);
        assert_eq!(f.saw(Some(1)), Some(1));
        // A move confirmed is forgotten: the next needs two looks again.
        assert_eq!(f.saw(Some(1)), None);
        assert_eq!(f.saw(None), None);
        assert_eq!(f.saw(Some(1)), None);
        assert_eq!(f.saw(Some(2)), None);
        assert_eq!(f.saw(Some(1)), None);
        assert_eq!(f.saw(Some(1)), Some(1));
    }

    #[test]
    fn the_destination_is_the_worker_paired_with_the_cpu_within_the_balance_margin() {
        let loads = WorkerLoads::new(3);
        // Workers 0 and 2 share CPU 4 (more workers than CPUs); worker 1 has CPU 7.
        let paired = [Some(4), Some(7), Some(4)];
        let zero = follow(0, &paired, &loads);
        assert_eq!(zero.destination(4), None, "its own CPU");
        assert_eq!(zero.destination(7), Some(1));
        assert_eq!(zero.destination(5), None, "a CPU no worker is paired with");
        assert_eq!(zero.destination(99), None);
        let one = follow(1, &paired, &loads);
        open(&loads, 0, 3);
        assert_eq!(
            one.destination(4),
            Some(2),
            "the less loaded of the CPU's workers"
        );
        assert_eq!(one.destination(7), None);
        // Worker 1 holds nothing: moving to worker 0 or 2 would put them beyond the margin.
        open(&loads, 0, 20);
        open(&loads, 2, 20);
        assert_eq!(one.destination(4), None);
        open(&loads, 1, 10);
        assert_eq!(one.destination(4), Some(2));
    }

    #[test]
    fn a_large_body_goes_to_a_worker_of_another_cpu_when_this_one_shares_the_clients() {
        let loads = WorkerLoads::new(3);
        let two = follow(0, &[Some(0), Some(1)], &WorkerLoads::new(2));
        assert_eq!(two.bulk_sender(0, 0), Some(1), "on the client's CPU");
        assert_eq!(two.bulk_sender(1, 0), None, "already apart from the client");
        assert_eq!(two.bulk_sender(0, 1), None);
        // Workers 0 and 2 on CPU 4, worker 1 on CPU 7.
        let paired = [Some(4), Some(7), Some(4)];
        assert_eq!(follow(0, &paired, &loads).bulk_sender(4, 4), Some(1));
        let one = follow(1, &paired, &loads);
        open(&loads, 0, 2);
        assert_eq!(one.bulk_sender(7, 7), Some(2), "the less loaded");
        open(&loads, 2, 3);
        assert_eq!(one.bulk_sender(7, 7), Some(0));
        let alone = follow(0, &[Some(4), Some(4)], &loads);
        assert_eq!(alone.bulk_sender(4, 4), None, "no worker on another CPU");
    }

    /// The worker a body is handed to sends it through a descriptor of its own, closes that
    /// descriptor, then says so; the connection's own descriptor carries on.
    #[actix_rt::test]
    async fn a_handed_body_is_sent_whole_and_the_connection_goes_on() {
        use std::io::Write as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let want: Vec<u8> = (0..3_000_001u32).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().expect("file");
        file.write_all(&want).expect("write");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let (done, sent) = oneshot::channel();
        let bulk = Bulk {
            socket: std::net::TcpStream::from(server.as_fd().try_clone_to_owned().expect("dup")),
            range: FileRange {
                file: Arc::new(file),
                offset: 1,
                len: 2_999_999,
                sendfile: true,
            },
            send_timeout: Duration::from_secs(5),
            done,
        };
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 2_999_999 + 4];
            client.read_exact(&mut got).await.map(|_| got)
        });
        actix_rt::spawn(bulk.send());
        sent.await.expect("told").expect("sent");
        server
            .write_all(b"tail")
            .await
            .expect("the connection's own descriptor");
        let got = reader.await.expect("reader").expect("read");
        assert!(got[..2_999_999] == want[1..3_000_000], "the range, whole");
        assert_eq!(&got[2_999_999..], b"tail");
    }

    #[test]
    fn a_full_inbox_gives_the_connection_back() {
        let loads = WorkerLoads::new(2);
        let (tx, mut rx) = mpsc::channel(1);
        let (closed, _) = mpsc::channel(1);
        let f = Follow::new(0, &[Some(0), Some(1)], loads, vec![closed, tx].into());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let moved = |n| {
            let stream = std::net::TcpStream::connect(listener.local_addr().expect("addr"))
                .expect("connect");
            let guard = ConnGuard::new(Default::default(), Arc::default());
            Moved {
                peer: stream.local_addr().expect("addr"),
                stream,
                guard,
                settings: Settings::default(),
                moves: n,
            }
        };
        assert!(f.send(1, moved(1)).is_ok());
        let back = f.send(1, moved(2)).expect_err("full");
        assert_eq!(back.moves, 2);
        assert!(f.send(0, moved(3)).is_err(), "closed");
        assert!(f.send(5, moved(4)).is_err(), "no such worker");
        let Handoff::Connection(first) = rx.try_recv().expect("the first") else {
            panic!("a connection was handed");
        };
        assert_eq!(first.moves, 1);
    }

    #[test]
    fn a_connected_socket_tells_the_cpu_its_last_segment_arrived_on() {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let allowed = sched_getaffinity(None).expect("affinity");
        let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
            .filter(|&c| allowed.is_set(c))
            .collect();
        // Over loopback a segment is received on the CPU that sent it.
        for &cpu in cpus.iter().rev() {
            let mut client = client.try_clone().expect("clone");
            std::thread::spawn(move || {
                let mut one = CpuSet::new();
                one.set(cpu);
                sched_setaffinity(None, &one).expect("pin");
                client.write_all(b"x").expect("write");
            })
            .join()
            .expect("client thread");
            let mut byte = [0];
            server.read_exact(&mut byte).expect("read");
            let seen = Follow::cpu_of(&server).expect("SO_INCOMING_CPU");
            assert_eq!(usize::try_from(seen).ok(), Some(cpu));
        }
    }
}
