//! Connection steering: a new connection goes to the worker paired with the CPU that received
//! it, unless that would load one worker more than the others.
//!
//! Every worker has its own `SO_REUSEPORT` listener, and the kernel hashes each new connection
//! to one of them. A hashed connection is served by a worker unrelated to the CPU its packets
//! arrive on, so every packet wakes the worker on another CPU, and a client's connections are
//! spread over every worker. Each listener instead asks for the connections received on one
//! CPU (`SO_INCOMING_CPU`, which the kernel honours within a reuseport group since Linux 6.1;
//! older kernels keep hashing). A connection whose packets arrive on CPU *c* is then served by
//! the worker paired with *c*: the wakeups stay on one CPU, and the scheduler can keep the worker
//! where its traffic is. With two busy client threads over loopback this is worth about half
//! again in requests per second in most runs (the README gives the HTTP/1.1 bench's figures).
//! Pairing happens once, at accept; a plain HTTP/1.1 connection whose client then sends from
//! another CPU moves to that CPU's worker later ([`switchyard_sessions::follow`]).
//!
//! Pairing alone trusts the network card to spread connections over CPUs. When one CPU
//! receives most of them (a card with one queue, or one busy client), its worker would get
//! most of them. So after each accept, a worker that has stayed above the least-loaded worker
//! by more than a margin for a while (or by far more, at once) stops asking for its CPU's
//! connections, and they are hashed over every worker again; it asks again once it is back
//! near the others (see [`Valve`]).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::net::sockopt::set_socket_incoming_cpu;
use switchyard_services::workers::{WorkerLoad, soft_margin};

/// `SO_INCOMING_CPU` value meaning "no CPU": the listener takes hashed connections only.
const NO_CPU: u32 = u32::MAX;

/// The CPU each worker's listeners ask for: the CPUs this process may run on, in order, worker
/// `w` taking the `w`-th (modulo their number). `None` for every worker when there is only one
/// worker or the CPUs cannot be read.
pub fn paired_cpus(workers: usize) -> Vec<Option<u32>> {
    let allowed = allowed_cpus();
    if workers < 2 || allowed.is_empty() {
        return vec![None; workers];
    }
    (0..workers)
        .map(|w| Some(allowed[w % allowed.len()]))
        .collect()
}

fn allowed_cpus() -> Vec<u32> {
    use rustix::thread::{CpuSet, sched_getaffinity};
    let Ok(set) = sched_getaffinity(None) else {
        return Vec::new();
    };
    (0..CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .filter_map(|cpu| u32::try_from(cpu).ok())
        .collect()
}

/// Imbalance that stops steering at once: 256 connections plus a quarter of the least load.
const HARD_MARGIN: usize = 256;
/// How long an imbalance between the soft and the hard margin may last. Clients opening their
/// connections a little apart (wrk starts its threads one after the other) pass it; a CPU that
/// keeps receiving most connections does not.
const GRACE: Duration = Duration::from_millis(100);

/// When a worker stops and resumes taking its CPU's connections: the decision alone, applied
/// to the socket by [`Steering`].
///
/// It stops when it has been above the soft margin for [`GRACE`], or at once above the hard
/// one; it resumes at half the soft margin.
#[derive(Debug, Clone)]
pub struct Valve {
    on: bool,
    /// Since when the worker has been above the soft margin, while steering.
    over_since: Option<Instant>,
}

impl Default for Valve {
    fn default() -> Valve {
        Valve {
            on: true,
            over_since: None,
        }
    }
}

impl Valve {
    /// After an accept at `now`, with `own` connections open on this worker and `least` on the
    /// least-loaded one: whether to take this CPU's connections from now on.
    pub fn update(&mut self, now: Instant, own: usize, least: usize) -> bool {
        let soft = least + soft_margin(least);
        if !self.on {
            self.on = own <= least + soft_margin(least) / 2;
            return self.on;
        }
        if own <= soft {
            self.over_since = None;
        } else if own > least + HARD_MARGIN + least / 4
            || now.duration_since(*self.over_since.get_or_insert(now)) >= GRACE
        {
            self.on = false;
            self.over_since = None;
        }
        self.on
    }
}

/// Make `socket` ask for the connections received on `cpu`, before it listens, so that its
/// first connection is steered too. False if the socket refuses (it then keeps the kernel's
/// hashing).
pub fn ask_for(socket: impl AsFd, cpu: u32) -> bool {
    match set_socket_incoming_cpu(socket, cpu) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(cpu, error = %e, "SO_INCOMING_CPU refused; connections are hashed");
            false
        }
    }
}

/// The steering of one listener socket.
#[derive(Debug)]
pub struct Steering {
    cpu: u32,
    valve: Valve,
    /// Whether the listener asks for `cpu`'s connections now.
    on: bool,
}

impl Steering {
    /// The steering of a listener that asks for `cpu`'s connections (see [`ask_for`]).
    pub fn new(cpu: u32) -> Steering {
        Steering {
            cpu,
            valve: Valve::default(),
            on: true,
        }
    }

    /// After an accept: stop or resume taking this CPU's connections, by `load`.
    pub fn rebalance(&mut self, listener: impl AsFd, load: &WorkerLoad) {
        let (own, least) = (load.open(), load.least());
        let on = self.valve.update(Instant::now(), own, least);
        if on == self.on {
            return;
        }
        let value = if on { self.cpu } else { NO_CPU };
        match set_socket_incoming_cpu(listener, value) {
            Ok(()) => {
                self.on = on;
                tracing::debug!(
                    worker = load.index(),
                    cpu = self.cpu,
                    open = own,
                    least,
                    steering = on,
                    "connection steering changed"
                );
            }
            Err(e) => tracing::debug!(error = %e, "SO_INCOMING_CPU refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_services::workers::SOFT_MARGIN;

    use super::*;

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_short_imbalance_is_kept_a_lasting_one_stops_steering_until_it_is_half_the_margin() {
        let t0 = Instant::now();
        let mut valve = Valve::default();
        // Within the soft margin (16 with nothing open elsewhere): steering, for ever.
        assert!(valve.update(t0, 16, 0));
        assert!(valve.update(ms(t0, 10_000), 16, 0));
        // Above it: kept for the grace period, counted from the first accept above it.
        assert!(valve.update(ms(t0, 10_000), 100, 0));
        assert!(valve.update(ms(t0, 10_099), 120, 0));
        assert!(!valve.update(ms(t0, 10_100), 121, 0));
        // Off: resumes at half the soft margin only.
        assert!(!valve.update(ms(t0, 20_000), 9, 0));
        assert!(valve.update(ms(t0, 20_000), 8, 0));
        // Back within the margin, the grace period starts again from zero.
        assert!(valve.update(ms(t0, 30_000), 17, 0));
        assert!(valve.update(ms(t0, 30_050), 16, 0));
        assert!(valve.update(ms(t0, 30_120), 17, 0));
        assert!(!valve.update(ms(t0, 30_220), 17, 0));
    }

    #[test]
    fn a_large_imbalance_stops_steering_at_once_and_the_margins_grow_with_the_load() {
        let t0 = Instant::now();
        let mut valve = Valve::default();
        assert!(valve.update(t0, 256, 0));
        assert!(!valve.update(t0, 257, 0));
        // 800 open on the least-loaded worker: soft 16 + 100, hard 256 + 200.
        let mut valve = Valve::default();
        assert!(valve.update(t0, 916, 800));
        assert!(valve.update(t0, 1256, 800));
        assert!(!valve.update(t0, 1257, 800));
        assert!(!valve.update(t0, 859, 800));
        assert!(valve.update(t0, 858, 800));
        // The least-loaded worker itself always takes its CPU's connections.
        assert!(Valve::default().update(t0, 5000, 5000));
    }

    #[test]
    fn connections_all_from_one_cpu_end_shared_within_the_margins() {
        // Every connection arrives on worker 0's CPU, one a millisecond; while worker 0 does not
        // steer, the kernel hashes (modelled as alternating).
        let t0 = Instant::now();
        let mut open = [0usize; 2];
        let mut valve = Valve::default();
        let (mut on, mut next_hashed) = (true, 0);
        for i in 0..10_000 {
            let to = if on {
                0
            } else {
                next_hashed ^= 1;
                next_hashed
            };
            open[to] += 1;
            if to == 0 {
                on = valve.update(ms(t0, i), open[0], open[0].min(open[1]));
            }
        }
        let least = open[0].min(open[1]);
        assert!(open[0] <= least + HARD_MARGIN + least / 4 + 1, "{open:?}");
        assert!(open[1] > 4_000, "{open:?}");
    }

    #[test]
    fn workers_pair_with_the_allowed_cpus_in_turn() {
        let cpus = paired_cpus(3);
        assert_eq!(cpus.len(), 3);
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        for (w, cpu) in cpus.iter().enumerate() {
            assert_eq!(*cpu, Some(allowed[w % allowed.len()]));
        }
        assert_eq!(paired_cpus(1), vec![None]);
    }

    #[test]
    fn a_listener_takes_and_gives_up_its_cpus_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        assert!(ask_for(&listener, 0), "SO_INCOMING_CPU");
        let mut steering = Steering::new(0);
        let read = |l: &std::net::TcpListener| rustix::net::sockopt::socket_incoming_cpu(l);
        assert_eq!(read(&listener).expect("read"), 0);
        let loads = switchyard_services::workers::WorkerLoads::new(2);
        let busy = loads.worker(0);
        for _ in 0..=HARD_MARGIN {
            busy.counter().opened();
        }
        steering.rebalance(&listener, &busy);
        assert_eq!(read(&listener).expect("read"), NO_CPU);
        for _ in 0..=HARD_MARGIN - SOFT_MARGIN / 2 {
            busy.counter().closed();
        }
        steering.rebalance(&listener, &busy);
        assert_eq!(read(&listener).expect("read"), 0);
    }
}
