//! Keep-alive liveness at scale, on a virtual clock: a PE that stops answering is removed
//! within `keepalive_interval + keepalive_timeout` of its last sign of life whatever the
//! batching; a PE that keeps re-registering is never probed; a connection's keep-alives
//! leave in batches on its grid (`keepalive_batch`).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, Dest, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::registrar::{RegistrarEvent, RemovalReason};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, Protocol, ServerId, TransportAddr,
    UserTransport,
};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn meta(conn: u64) -> RecvMeta {
    let peer: SocketAddr = format!("127.0.0.1:{}", 20_000 + conn).parse().unwrap();
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

fn registration(pool: &str, id: u32) -> Vec<u8> {
    AsapMessage::Registration {
        handle: pool.into(),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: 600_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                (1000 + id % 50_000) as u16,
                "127.0.0.1".parse().unwrap(),
            )),
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
    .encode_to_vec()
}

/// A registrar and PEs on a virtual clock; PEs answer keep-alives 1 ms later unless dead.
struct World {
    r: Registrar,
    t0: Instant,
    now: Instant,
    /// PE -> its connection.
    pes: BTreeMap<(PoolHandle, u32), u64>,
    dead: BTreeSet<u32>,
    /// Last sign of life sent by each PE (registration or ACK).
    heard: BTreeMap<u32, Instant>,
    acks: VecDeque<(Instant, u64, PoolHandle, u32)>,
    /// Re-registration schedule: PE -> period.
    rereg: BTreeMap<u32, (Duration, Instant)>,
    /// Keep-alives sent: (time, conn, PE).
    sent: Vec<(Instant, u64, u32)>,
    removed: Vec<(Instant, u32, RemovalReason)>,
}

impl World {
    fn new(cfg: RegistrarConfig) -> Self {
        #[allow(clippy::disallowed_methods)] // a test's start of time
        let t0 = Instant::now();
        let mut r = Registrar::new(cfg, 11);
        r.handle_timeout(t0);
        World {
            r,
            t0,
            now: t0,
            pes: BTreeMap::new(),
            dead: BTreeSet::new(),
            heard: BTreeMap::new(),
            acks: VecDeque::new(),
            rereg: BTreeMap::new(),
            sent: Vec::new(),
            removed: Vec::new(),
        }
    }

    fn connect(&mut self, conn: u64) {
        self.r.handle_transport(
            self.now,
            TransportEvent::Accepted {
                conn: ConnId(conn),
                meta: meta(conn),
            },
        );
        self.drain();
    }

    fn register(&mut self, conn: u64, pool: &str, id: u32) {
        self.pes.insert((pool.into(), id), conn);
        self.heard.insert(id, self.now);
        self.r
            .handle_message(self.now, ConnId(conn), &meta(conn), &registration(pool, id));
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(t) = self.r.poll_transmit() {
            let Dest::Conn(ConnId(c)) = t.dest else {
                continue;
            };
            if let Ok(d) = AsapMessage::decode(&t.bytes) {
                if let AsapMessage::EndpointKeepAlive {
                    handle,
                    pe_id: Some(id),
                    ..
                } = d.message
                {
                    self.sent.push((self.now, c, id.0));
                    if !self.dead.contains(&id.0) {
                        self.acks.push_back((self.now + MS, c, handle, id.0));
                    }
                }
            }
        }
        while let Some(e) = self.r.poll_event() {
            if let RegistrarEvent::PeRemoved { pe, reason, .. } = e {
                self.removed.push((self.now, pe.id.0, reason));
            }
        }
    }

    /// Run the clock to `end`.
    fn run_until(&mut self, end: Instant) {
        loop {
            let mut next = end;
            if let Some(t) = self.r.poll_timeout() {
                next = next.min(t);
            }
            if let Some((t, ..)) = self.acks.front() {
                next = next.min(*t);
            }
            if let Some(t) = self.rereg.values().map(|(_, t)| *t).min() {
                next = next.min(t);
            }
            self.now = next.max(self.now);
            while self.acks.front().is_some_and(|(t, ..)| *t <= self.now) {
                let (_, c, handle, id) = self.acks.pop_front().unwrap();
                self.heard.insert(id, self.now);
                let msg = AsapMessage::EndpointKeepAliveAck {
                    handle,
                    pe_id: PeId(id),
                }
                .encode_to_vec();
                self.r.handle_message(self.now, ConnId(c), &meta(c), &msg);
                self.drain();
            }
            let due: Vec<u32> = self
                .rereg
                .iter()
                .filter(|(_, (_, t))| *t <= self.now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                let (period, _) = self.rereg[&id];
                self.rereg.insert(id, (period, self.now + period));
                let (pool, conn) = self
                    .pes
                    .iter()
                    .find(|((_, i), _)| *i == id)
                    .map(|((h, _), c)| (h.clone(), *c))
                    .unwrap();
                let pool = String::from_utf8(pool.as_bytes().to_vec()).unwrap();
                self.register(conn, &pool, id);
            }
            self.r.handle_timeout(self.now);
            self.drain();
            if self.now >= end {
                return;
            }
        }
    }
}

fn cfg(batch: Duration) -> RegistrarConfig {
    RegistrarConfig {
        keepalive_batch: batch,
        max_pes_per_source: 0,
        ..RegistrarConfig::default()
    }
}

/// 60 PEs on 3 connections registered over 3 s; 12 stop answering at 20 s.
fn dead_pes_world(batch: Duration) -> World {
    let mut w = World::new(cfg(batch));
    for c in 1..=3 {
        w.connect(c);
    }
    for id in 1..=60u32 {
        let at = w.t0 + Duration::from_millis(u64::from(id) * 50);
        w.run_until(at);
        w.register(u64::from(id % 3 + 1), &format!("pool{}", id % 7), id);
    }
    w.run_until(w.t0 + 20 * S);
    w.dead.extend((1..=60).filter(|id| id % 5 == 0));
    w.run_until(w.t0 + 40 * S);
    w
}

#[test]
fn a_silent_pe_is_removed_within_interval_plus_timeout_with_and_without_batching() {
    for batch in [Duration::ZERO, Duration::from_millis(500), 2 * S] {
        let w = dead_pes_world(batch);
        let bound = 3 * S + 2 * S;
        let removed: BTreeMap<u32, (Instant, RemovalReason)> =
            w.removed.iter().map(|(t, id, r)| (*id, (*t, *r))).collect();
        for id in 1..=60u32 {
            match removed.get(&id) {
                Some((t, reason)) => {
                    assert!(
                        w.dead.contains(&id),
                        "batch {batch:?}: live PE {id} removed"
                    );
                    assert_eq!(*reason, RemovalReason::KeepAliveTimeout);
                    let last = w.heard[&id];
                    assert!(
                        *t <= last + bound,
                        "batch {batch:?}: PE {id} removed {:?} after its last ACK",
                        *t - last
                    );
                }
                None => assert!(!w.dead.contains(&id), "batch {batch:?}: dead PE {id} kept"),
            }
        }
        assert_eq!(w.r.handlespace().len(), 48);
    }
}

/// Distinct instants at which one connection's keep-alives left between 10 s and 20 s.
fn send_instants(w: &World, conn: u64) -> usize {
    let from = w.t0 + 10 * S;
    let to = w.t0 + 20 * S;
    w.sent
        .iter()
        .filter(|(t, c, _)| *c == conn && *t >= from && *t < to)
        .map(|(t, ..)| *t)
        .collect::<BTreeSet<_>>()
        .len()
}

#[test]
fn a_connections_keepalives_leave_together_on_its_grid() {
    let batched = dead_pes_world(Duration::from_millis(500));
    let single = dead_pes_world(Duration::ZERO);
    for conn in 1..=3 {
        let n = send_instants(&batched, conn);
        // 20 PEs, ~4 keep-alives each in 10 s: at most one wake-up per grid point.
        assert!(
            n <= 21,
            "conn {conn}: {n} wake-ups in 10 s with 500 ms batches"
        );
        let m = send_instants(&single, conn);
        assert!(m > 40, "conn {conn}: only {m} wake-ups in 10 s unbatched");
        // Batching only moves keep-alives earlier: at most ~25 % more of them.
        let count = |w: &World| {
            w.sent
                .iter()
                .filter(|(t, c, _)| *c == conn && *t >= w.t0 + 10 * S && *t < w.t0 + 20 * S)
                .count()
        };
        let (b, s) = (count(&batched), count(&single));
        assert!(
            b * 4 <= s * 5 + 8,
            "conn {conn}: {b} batched vs {s} keep-alives"
        );
    }
}

#[test]
fn a_pe_that_keeps_re_registering_is_never_probed() {
    for batch in [Duration::ZERO, Duration::from_millis(500)] {
        let mut w = World::new(cfg(batch));
        w.connect(1);
        w.register(1, "p", 1);
        w.register(1, "p", 2);
        // PE 1 re-registers every second (under the shortest jittered period, 2.25 s,
        // minus a batch); PE 2 only answers keep-alives.
        w.rereg.insert(1, (S, w.now + S));
        w.run_until(w.t0 + 60 * S);
        let probes = |id: u32| w.sent.iter().filter(|(_, _, p)| *p == id).count();
        assert_eq!(probes(1), 0, "batch {batch:?}: re-registering PE probed");
        assert!(
            probes(2) >= 20,
            "batch {batch:?}: PE 2 probed {} times",
            probes(2)
        );
        assert!(w.removed.is_empty());
    }
}

/// A registrar for bulk registrations (no quotas, no registration rate, no keep-alive
/// batching) with the given jitter, started at the returned instant.
fn unbatched_registrar(jitter_percent: u8, seed: u64) -> (Registrar, Instant) {
    let mut r = Registrar::new(
        RegistrarConfig {
            keepalive_batch: Duration::ZERO,
            keepalive_jitter_percent: jitter_percent,
            max_pes_per_source: 0,
            max_pes_per_connection: 0,
            max_registration_rate: 0,
            ..RegistrarConfig::default()
        },
        seed,
    );
    #[allow(clippy::disallowed_methods)] // a test's start of time
    let t0 = Instant::now();
    r.handle_timeout(t0);
    (r, t0)
}

/// 100,000 PEs on 100 connections whose keep-alives all fall due at one instant: no
/// `handle_timeout` call handles more than `TIMERS_PER_CALL` of them (the rest stay due,
/// `poll_timeout()` at `now`), and a shell that calls again while the deadline is due
/// sends every one of them without the clock moving.
#[test]
fn one_timeout_call_handles_a_bounded_number_of_due_keepalives() {
    use rserpool_proto::registrar::TIMERS_PER_CALL;
    const PES: u32 = 100_000;
    const CONNS: u64 = 100;
    let (mut r, t0) = unbatched_registrar(0, 11);
    for c in 1..=CONNS {
        r.handle_transport(
            t0,
            TransportEvent::Accepted {
                conn: ConnId(c),
                meta: meta(c),
            },
        );
    }
    // Everything registered at t0: every keep-alive is due at t0 + interval.
    for id in 1..=PES {
        let c = u64::from(id) % CONNS + 1;
        let reg = registration(&format!("pool{}", id % 1000), id);
        r.handle_message(t0, ConnId(c), &meta(c), &reg);
    }
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
    assert_eq!(r.handlespace().len(), PES as usize);
    let due = r.poll_timeout().unwrap();
    assert!(
        due > t0 && due <= t0 + 3 * S,
        "first keep-alive due at {:?}",
        due - t0
    );
    let now = t0 + 3 * S;
    let mut probed = BTreeSet::new();
    let mut calls = 0;
    let mut most = 0;
    while r.poll_timeout().is_some_and(|t| t <= now) {
        calls += 1;
        assert!(calls <= PES as usize, "the deadline loop does not drain");
        r.handle_timeout(now);
        let mut n = 0;
        while let Some(t) = r.poll_transmit() {
            if let Ok(d) = AsapMessage::decode(&t.bytes) {
                if let AsapMessage::EndpointKeepAlive {
                    pe_id: Some(id), ..
                } = d.message
                {
                    n += 1;
                    assert!(probed.insert(id.0), "PE {} probed twice", id.0);
                }
            }
        }
        most = most.max(n);
        assert!(
            n <= TIMERS_PER_CALL,
            "one handle_timeout sent {n} keep-alives (bound {TIMERS_PER_CALL})"
        );
    }
    assert_eq!(probed.len(), PES as usize, "not every due PE was probed");
    assert_eq!(most, TIMERS_PER_CALL);
    assert!(calls >= PES as usize / TIMERS_PER_CALL);
    // Next: the ACK timeouts, 2 s later; nothing else is due before then.
    assert!(r.poll_timeout().unwrap() > now);
}

/// A registration storm: 10,000 PEs registered at one instant (jitter 25 %, no batching)
/// are first probed spread over half the interval (twice the jitter), not piled up in
/// its last quarter, and never later than the interval.
#[test]
fn the_first_keepalives_after_a_registration_storm_are_spread() {
    const PES: u32 = 10_000;
    let (mut r, t0) = unbatched_registrar(25, 12);
    r.handle_transport(
        t0,
        TransportEvent::Accepted {
            conn: ConnId(1),
            meta: meta(1),
        },
    );
    for id in 1..=PES {
        let reg = registration(&format!("pool{}", id % 100), id);
        r.handle_message(t0, ConnId(1), &meta(1), &reg);
    }
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
    // Step through the first interval and note when each PE's first keep-alive leaves.
    let interval = 3 * S;
    let mut first: BTreeMap<u32, Duration> = BTreeMap::new();
    while let Some(t) = r.poll_timeout().filter(|t| *t <= t0 + interval) {
        r.handle_timeout(t);
        while let Some(tx) = r.poll_transmit() {
            if let Ok(d) = AsapMessage::decode(&tx.bytes) {
                if let AsapMessage::EndpointKeepAlive {
                    pe_id: Some(id), ..
                } = d.message
                {
                    first.entry(id.0).or_insert(t - t0);
                }
            }
        }
    }
    assert_eq!(
        first.len(),
        PES as usize,
        "every PE probed within the interval"
    );
    let earliest = *first.values().min().unwrap();
    let latest = *first.values().max().unwrap();
    assert!(earliest >= interval / 2, "first probe after {earliest:?}");
    assert!(latest <= interval, "first probe after {latest:?}");
    // Without the spread all would fall in the last quarter (2.25 s – 3 s).
    let early = first.values().filter(|d| **d < interval * 3 / 4).count();
    assert!(
        early > PES as usize / 4,
        "only {early} of {PES} first probes before 2.25 s"
    );
}
