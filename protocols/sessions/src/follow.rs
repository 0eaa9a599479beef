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

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;

use switchyard_services::workers::{OpenCounter, WorkerLoads};
use tokio::sync::mpsc;

use crate::env::{ConnGuard, Settings};

/// Requests between two looks at a connection's CPU, before it has moved.
pub const PERIOD: u16 = 16;
/// Each move doubles the period, up to this many times.
const MAX_BACKOFF: u8 = 6;
/// Connections handed to a worker and not yet taken up by it.
pub const INBOX: usize = 1024;

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
    inboxes: Rc<[mpsc::Sender<Moved>]>,
}

impl Follow {
    /// `paired[w]` is the CPU worker `w` is paired with; `inboxes[w]` its acceptor's inbox for
    /// this listener.
    pub fn new(
        worker: usize,
        paired: &[Option<u32>],
        loads: Arc<WorkerLoads>,
        inboxes: Rc<[mpsc::Sender<Moved>]>,
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
        match self.inboxes.get(to) {
            Some(inbox) => inbox.try_send(moved).map_err(|e| match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            }),
            None => Err(moved),
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
        assert_eq!(rx.try_recv().expect("the first").moves, 1);
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
