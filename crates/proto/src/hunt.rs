//! Server hunt (RFC 5352 §3.6, procedures §1.7): finding a home registrar.
//!
//! A hunt attempt is "send the first pending request to the candidate" (to
//! [`Dest::Endpoint`](crate::io::Dest::Endpoint), which opens the connection): the
//! registration for a PE, the handle resolution for a PU. The request doubles as the
//! probe, so the hunt does not use the connect-only
//! [`TransportCommand::Connect`](crate::io::TransportCommand::Connect). Candidates are tried one at a time; a candidate that neither
//! connects nor answers within `connect_timeout` is abandoned (its late answer is still
//! accepted while the hunt goes on, so up to a few attempts overlap). When every known
//! registrar failed, the hunt backs off (`backoff_initial`, doubling up to `backoff_max`,
//! RFC RETRAN-MAX) and starts a new round.
//!
//! Known registrars = the static list from the configuration, then registrars learnt from
//! ASAP_SERVER_ANNOUNCE datagrams, each valid for `announce_timeout` (T7) after it was last
//! heard.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use rserpool_wire::{ServerId, TransportAddr, TransportKind};

use crate::common::later;
use crate::io::{ConnId, Endpoint};

/// Which registrar a hunt round tries first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HuntOrder {
    /// Static list first, in configuration order, then announced registrars.
    InOrder,
    /// Start at a random position of the list, then go round (RSPLIB; spreads load).
    #[default]
    Random,
}

/// Server-hunt knobs shared by the PE and PU cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HuntConfig {
    /// How long one candidate may take to connect (T5; RFC 10 s, RSPLIB 7.5 s). Once the
    /// connection is up, the request timeout of the core applies instead. Default 5 s.
    pub connect_timeout: Duration,
    /// Pause after a round in which every registrar failed. Default 1 s.
    pub backoff_initial: Duration,
    /// The pause doubles per failed round up to this (RFC RETRAN-MAX). Default 60 s.
    pub backoff_max: Duration,
    /// Default [`HuntOrder::Random`].
    pub order: HuntOrder,
    /// Lifetime of a registrar learnt from an announce (T7-ENRPoutdate). Default 5 s.
    pub announce_timeout: Duration,
    /// At most this many announced registrars are remembered (announces are
    /// unauthenticated; RFC 5352 §9). Default 64.
    pub max_announced: usize,
}

impl Default for HuntConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            order: HuntOrder::Random,
            announce_timeout: Duration::from_secs(5),
            max_announced: 64,
        }
    }
}

/// Turn the transports of an ASAP_SERVER_ANNOUNCE into endpoints. An announce without
/// transports means SCTP to the datagram's source address and source port (RSPLIB binds
/// its announce socket to its ASAP port; Discrepancy #8). Unspecified addresses
/// (0.0.0.0 / ::) are replaced by the source address.
pub fn announce_endpoints(source: SocketAddr, transports: &[TransportAddr]) -> Vec<Endpoint> {
    if transports.is_empty() {
        return vec![Endpoint::sctp(vec![source])];
    }
    let fix = |a: &IpAddr| {
        if a.is_unspecified() {
            source.ip()
        } else {
            *a
        }
    };
    transports
        .iter()
        .filter_map(|t| match t.kind {
            TransportKind::Sctp => {
                let addrs: Vec<SocketAddr> = t
                    .addrs
                    .iter()
                    .map(|a| SocketAddr::new(fix(a), t.port))
                    .collect();
                (!addrs.is_empty()).then(|| Endpoint::sctp(addrs))
            }
            TransportKind::Tcp => t
                .addrs
                .first()
                .map(|a| Endpoint::tcp(SocketAddr::new(fix(a), t.port))),
            _ => None,
        })
        .collect()
}

#[derive(Debug)]
struct Announced {
    endpoint: Endpoint,
    server_id: ServerId,
    expires: Instant,
}

#[derive(Debug)]
enum State {
    Idle,
    Trying {
        candidates: Vec<Endpoint>,
        idx: usize,
        conn: Option<ConnId>,
        /// Connect deadline; cleared once connected (the core's request timer rules then).
        deadline: Option<Instant>,
    },
    Backoff {
        until: Instant,
    },
}

/// What the core should do next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send the first pending request to this endpoint.
    Try(Endpoint),
    /// No registrar left to try in this round; backing off until the given time.
    Exhausted(Instant),
}

/// A timer of the hunt fired.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    /// The current candidate did not connect in time.
    AttemptTimedOut,
    /// The back-off after a failed round is over.
    BackoffOver,
}

/// Server hunt state machine (crate-private; the cores drive it).
#[derive(Debug)]
pub(crate) struct Hunter {
    cfg: HuntConfig,
    static_list: Vec<Endpoint>,
    accept_announces: bool,
    announced: Vec<Announced>,
    state: State,
    backoff: Duration,
}

impl Hunter {
    pub(crate) fn new(cfg: HuntConfig, static_list: Vec<Endpoint>, accept_announces: bool) -> Self {
        let backoff = cfg.backoff_initial;
        Self {
            cfg,
            static_list,
            accept_announces,
            announced: Vec::new(),
            state: State::Idle,
            backoff,
        }
    }

    pub(crate) fn is_hunting(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    pub(crate) fn in_backoff(&self) -> bool {
        matches!(self.state, State::Backoff { .. })
    }

    /// The candidate being tried.
    pub(crate) fn current(&self) -> Option<&Endpoint> {
        match &self.state {
            State::Trying {
                candidates, idx, ..
            } => candidates.get(*idx),
            _ => None,
        }
    }

    /// The connection of the current candidate, once known.
    pub(crate) fn current_conn(&self) -> Option<ConnId> {
        match &self.state {
            State::Trying { conn, .. } => *conn,
            _ => None,
        }
    }

    /// Registrars known now: static ones first, then announced ones (deduplicated).
    pub(crate) fn known(&self, now: Instant) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        let announced = self
            .announced
            .iter()
            .filter(|a| a.expires > now)
            .map(|a| &a.endpoint);
        for e in self.static_list.iter().chain(announced) {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        out
    }

    /// The server ID an announce gave for this endpoint, if any.
    pub(crate) fn server_id_of(&self, endpoint: &Endpoint) -> Option<ServerId> {
        self.announced
            .iter()
            .find(|a| &a.endpoint == endpoint)
            .map(|a| a.server_id)
    }

    /// Start a new round. `avoid` (the registrar that just failed) is tried last.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        rng: &mut impl Rng,
        avoid: Option<&Endpoint>,
    ) -> Step {
        let mut candidates = self.known(now);
        if self.cfg.order == HuntOrder::Random && candidates.len() > 1 {
            let k = rng.gen_range(0..candidates.len());
            candidates.rotate_left(k);
        }
        if let Some(a) = avoid {
            if let Some(pos) = candidates.iter().position(|c| c == a) {
                let e = candidates.remove(pos);
                candidates.push(e);
            }
        }
        if candidates.is_empty() {
            return self.exhausted(now);
        }
        let first = candidates[0].clone();
        self.state = State::Trying {
            candidates,
            idx: 0,
            conn: None,
            deadline: Some(later(now, self.cfg.connect_timeout)),
        };
        Step::Try(first)
    }

    /// The current candidate failed: try the next one, or back off.
    pub(crate) fn advance(&mut self, now: Instant) -> Step {
        let connect_timeout = self.cfg.connect_timeout;
        if let State::Trying {
            candidates,
            idx,
            conn,
            deadline,
        } = &mut self.state
        {
            *idx += 1;
            if let Some(next) = candidates.get(*idx) {
                *conn = None;
                *deadline = Some(later(now, connect_timeout));
                return Step::Try(next.clone());
            }
        }
        self.exhausted(now)
    }

    fn exhausted(&mut self, now: Instant) -> Step {
        let until = later(now, self.backoff);
        self.backoff = self.backoff.saturating_mul(2).min(self.cfg.backoff_max);
        self.state = State::Backoff { until };
        Step::Exhausted(until)
    }

    /// The hunt found a home: stop and reset the back-off.
    pub(crate) fn succeeded(&mut self) {
        self.state = State::Idle;
        self.backoff = self.cfg.backoff_initial;
    }

    /// Abandon the hunt without resetting the back-off.
    pub(crate) fn stop(&mut self) {
        self.state = State::Idle;
    }

    /// `Connected` for the current candidate: remember its connection, stop the connect
    /// timer. Returns whether it was the current candidate.
    pub(crate) fn connected(&mut self, conn_id: ConnId, endpoint: &Endpoint) -> bool {
        if let State::Trying {
            candidates,
            idx,
            conn,
            deadline,
        } = &mut self.state
        {
            if candidates.get(*idx) == Some(endpoint) {
                *conn = Some(conn_id);
                *deadline = None;
                return true;
            }
        }
        false
    }

    /// An answer arrived on `conn_id` while trying: adopt that connection as the current
    /// candidate's if none is known yet (the shell may reuse a connection silently).
    pub(crate) fn note_conn(&mut self, conn_id: ConnId) {
        if let State::Trying { conn, deadline, .. } = &mut self.state {
            if conn.is_none() {
                *conn = Some(conn_id);
                *deadline = None;
            }
        }
    }

    /// Whether a `ConnectFailed` for `endpoint` concerns the current candidate.
    pub(crate) fn is_current_endpoint(&self, endpoint: &Endpoint) -> bool {
        self.current() == Some(endpoint)
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let own = match &self.state {
            State::Trying { deadline, .. } => *deadline,
            State::Backoff { until } => Some(*until),
            State::Idle => None,
        };
        let ann = self.announced.iter().map(|a| a.expires).min();
        crate::io::earliest(own, ann)
    }

    /// Run due timers: purge expired announces; report an attempt timeout or the end of
    /// a back-off (the caller then calls [`Hunter::advance`] / [`Hunter::start`]).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<Fired> {
        self.announced.retain(|a| a.expires > now);
        match &self.state {
            State::Trying {
                deadline: Some(d), ..
            } if *d <= now => Some(Fired::AttemptTimedOut),
            State::Backoff { until } if *until <= now => {
                self.state = State::Idle;
                Some(Fired::BackoffOver)
            }
            _ => None,
        }
    }

    /// An ASAP_SERVER_ANNOUNCE was heard. Returns true when it named a registrar that was
    /// not known before (the core may then end a back-off early). A round under way adds
    /// a newly heard registrar to the end of its candidates.
    pub(crate) fn on_announce(
        &mut self,
        now: Instant,
        source: SocketAddr,
        server_id: ServerId,
        transports: &[TransportAddr],
    ) -> bool {
        if !self.accept_announces {
            return false;
        }
        let expires = later(now, self.cfg.announce_timeout);
        let mut new = false;
        for endpoint in announce_endpoints(source, transports) {
            if let Some(a) = self.announced.iter_mut().find(|a| a.endpoint == endpoint) {
                a.expires = expires;
                a.server_id = server_id;
                continue;
            }
            self.announced.retain(|a| a.expires > now);
            if self.announced.len() >= self.cfg.max_announced {
                continue;
            }
            new |= !self.static_list.contains(&endpoint);
            // A round under way tries it too, after the candidates it already has.
            if let State::Trying { candidates, .. } = &mut self.state {
                if !candidates.contains(&endpoint) {
                    candidates.push(endpoint.clone());
                }
            }
            self.announced.push(Announced {
                endpoint,
                server_id,
                expires,
            });
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rserpool_wire::TransportUse;

    fn ep(port: u16) -> Endpoint {
        Endpoint::tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn round_then_backoff_doubles() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cfg = HuntConfig {
            order: HuntOrder::InOrder,
            ..HuntConfig::default()
        };
        let mut h = Hunter::new(cfg, vec![ep(1), ep(2)], true);
        assert!(matches!(h.start(now, &mut rng, None), Step::Try(e) if e == ep(1)));
        assert!(matches!(h.advance(now), Step::Try(e) if e == ep(2)));
        let Step::Exhausted(t1) = h.advance(now) else {
            panic!()
        };
        assert_eq!(t1, now + Duration::from_secs(1));
        assert_eq!(h.handle_timeout(t1), Some(Fired::BackoffOver));
        assert!(matches!(h.start(t1, &mut rng, Some(&ep(1))), Step::Try(e) if e == ep(2)));
        h.advance(t1);
        let Step::Exhausted(t2) = h.advance(t1) else {
            panic!()
        };
        assert_eq!(t2, t1 + Duration::from_secs(2));
        h.succeeded();
        assert!(!h.is_hunting());
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn a_registrar_announced_during_a_round_is_tried_in_that_round() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut h = Hunter::new(HuntConfig::default(), vec![ep(1)], true);
        assert!(matches!(h.start(now, &mut rng, None), Step::Try(e) if e == ep(1)));
        let t = TransportAddr::tcp(2, IpAddr::from([127, 0, 0, 1]));
        let src = SocketAddr::from(([127, 0, 0, 1], 9));
        assert!(h.on_announce(now, src, ServerId(7), &[t]));
        assert!(matches!(h.advance(now), Step::Try(e) if e == ep(2)));
        assert!(matches!(h.advance(now), Step::Exhausted(_)));
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn announces_expire() {
        let now = Instant::now();
        let mut h = Hunter::new(HuntConfig::default(), vec![], true);
        let src = SocketAddr::from(([10, 0, 0, 1], 3863));
        let t = TransportAddr::tcp(3863, IpAddr::from([0, 0, 0, 0]));
        assert!(h.on_announce(now, src, ServerId(7), &[t]));
        let known = h.known(now);
        assert_eq!(
            known,
            vec![Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 3863)))]
        );
        assert_eq!(h.server_id_of(&known[0]), Some(ServerId(7)));
        h.handle_timeout(now + Duration::from_secs(6));
        assert!(h.known(now + Duration::from_secs(6)).is_empty());
        // No transports: SCTP to the source address and port.
        let s = TransportAddr::sctp(9, TransportUse::DATA_ONLY, vec![src.ip()]);
        let eps = announce_endpoints(src, &[]);
        assert_eq!(eps, vec![Endpoint::sctp(vec![src])]);
        assert_eq!(
            announce_endpoints(src, &[s]),
            vec![Endpoint::sctp(vec![SocketAddr::from(([10, 0, 0, 1], 9))])]
        );
    }
}
