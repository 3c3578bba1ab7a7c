//! Invariants, checked after every event, and the accounting of gone PEs.

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use rserpool_wire::{PeId, PoolHandle, ServerId};

use super::node::NodeCore;
use super::World;

/// Trace entries shown with an invariant violation (when the lines are kept).
const TRACE_TAIL: usize = 200;

impl World {
    /// Check `f` after every event; an `Err` panics with the seed and the message.
    pub fn add_invariant(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&World) -> Result<(), String> + 'static,
    ) {
        self.invariants.push((name.into(), Box::new(f)));
    }

    /// Check every registrar's handlespace indexes after every event (default on).
    pub fn set_check_handlespace(&mut self, on: bool) {
        self.check_handlespace = on;
    }

    /// No registrar may still hold a PE that crashed, hung or de-registered more than
    /// `bound` ago (off by default; pick keep-alive interval + timeout + slack).
    pub fn set_dead_pe_bound(&mut self, bound: Option<Duration>) {
        self.dead_pe_bound = bound;
    }

    /// The PEs that are gone and since when.
    pub fn gone_pes(&self) -> impl Iterator<Item = (PeId, Instant)> + '_ {
        self.pe_gone.iter().map(|(k, v)| (*k, *v))
    }

    pub(super) fn check(&mut self) {
        self.events_checked += 1;
        if let Err(e) = self.violations() {
            let tail = self.trace.lines().map_or_else(String::new, |l| {
                let from = l.len().saturating_sub(TRACE_TAIL);
                format!("\nlast trace entries:\n  {}", l[from..].join("\n  "))
            });
            panic!(
                "rserpool-sim invariant violated at {:?} (seed {}): {e}{tail}",
                self.elapsed(),
                self.seed
            );
        }
    }

    /// Every invariant, built-in and added; the first violation.
    pub fn violations(&self) -> Result<(), String> {
        let s = self.stats;
        let in_flight = self.in_flight;
        if s.sent + s.duplicated
            != s.delivered + s.lost + s.partitioned + s.dropped_dead + in_flight
        {
            return Err(format!(
                "messages unaccounted for: {s:?}, {in_flight} in flight"
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let NodeCore::Reg(r) = &n.core else { continue };
            if n.down {
                continue;
            }
            let hs = r.handlespace();
            if self.check_handlespace {
                hs.check_invariants();
            }
            if let Some(bound) = self.dead_pe_bound {
                for pool in hs.pools() {
                    for e in hs.pool_entries(pool) {
                        if let Some(&since) = self.pe_gone.get(&e.pe.id) {
                            if self.now - since > bound {
                                return Err(format!(
                                    "registrar {i} still holds {:?} in {pool:?}, gone for {:?}",
                                    e.pe.id,
                                    self.now - since
                                ));
                            }
                        }
                    }
                }
            }
        }
        for (name, f) in &self.invariants {
            f(self).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }
}

/// Every PE of a handlespace with its home.
type PeSet = BTreeSet<(PoolHandle, PeId, ServerId)>;

/// ENRP whole-world properties (registrars that peer): used as invariants after the faults
/// stop and as convergence conditions.
impl World {
    /// Every live registrar holds the same handlespace: the same PEs (pool handle, PE ID,
    /// home) and the same PE checksum per home registrar.
    pub fn handlespaces_agree(&self) -> Result<(), String> {
        let mut first: Option<(usize, PeSet)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let NodeCore::Reg(r) = &n.core else { continue };
            if n.down || n.muted {
                continue;
            }
            let hs = r.handlespace();
            let set: PeSet = hs
                .pools()
                .flat_map(|h| {
                    hs.pool_entries(h)
                        .map(move |e| (h.clone(), e.pe.id, e.pe.home_registrar))
                })
                .collect();
            match &first {
                None => first = Some((i, set)),
                Some((j, other)) => {
                    if *other != set {
                        let only_j: Vec<_> = other.difference(&set).take(5).collect();
                        let only_i: Vec<_> = set.difference(other).take(5).collect();
                        return Err(format!(
                            "registrars {j} and {i} differ: only at {j}: {only_j:?}, only at {i}: {only_i:?}"
                        ));
                    }
                }
            }
        }
        // Equal sets imply equal checksums; compare them anyway (the incremental ones).
        let mut sums: Option<(usize, Vec<(ServerId, u16)>)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let NodeCore::Reg(r) = &n.core else { continue };
            if n.down || n.muted {
                continue;
            }
            let hs = r.handlespace();
            let v: Vec<(ServerId, u16)> = hs.owners().map(|(o, _)| (o, hs.checksum(o))).collect();
            match &sums {
                None => sums = Some((i, v)),
                Some((j, w)) if *w != v => {
                    return Err(format!("checksums of {j} and {i} differ: {w:?} vs {v:?}"))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every live PE (up, not hung, registered) has exactly one home: the registrar its
    /// home connection leads to is up, and every live registrar holds the PE with that
    /// home (so none is missing anywhere).
    pub fn homes_consistent(&self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate() {
            let NodeCore::Pe(pe) = &n.core else { continue };
            if n.down || n.muted {
                continue;
            }
            let Some((conn, _)) = pe.home() else {
                return Err(format!("PE {i} has no home"));
            };
            let Some(end) = self.conns.get(&conn).filter(|e| e.open) else {
                return Err(format!("PE {i}: its home connection {conn} is closed"));
            };
            let home_node = self.conns.get(&end.peer).map(|e| e.node);
            let Some(h) = home_node.filter(|&h| !self.nodes[h].down && !self.nodes[h].muted) else {
                return Err(format!("PE {i}: its home registrar is not alive"));
            };
            let NodeCore::Reg(home) = &self.nodes[h].core else {
                return Err(format!(
                    "PE {i}: its home connection leads to a non-registrar"
                ));
            };
            let home_id = home.server_id();
            let super::node::Spec::Pe(cfg, _) = &n.spec else {
                continue;
            };
            let handle = cfg.pool_handle.clone();
            for (id, status) in pe.status() {
                if status != rserpool_proto::PeStatus::Registered {
                    let from = n.events.len().saturating_sub(4);
                    return Err(format!(
                        "PE {i}: {id:?} is {status:?}; its last events: {:?}",
                        &n.events[from..]
                    ));
                }
                for (j, m) in self.nodes.iter().enumerate() {
                    let NodeCore::Reg(r) = &m.core else { continue };
                    if m.down || m.muted {
                        continue;
                    }
                    match r.handlespace().get(&handle, id) {
                        None => return Err(format!("registrar {j} misses {id:?} of PE {i}")),
                        Some(e) if e.pe.home_registrar != home_id => {
                            return Err(format!(
                                "registrar {j} has {id:?} of PE {i} at home {}, the PE's home is {home_id} (node {h})",
                                e.pe.home_registrar
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(())
    }
}

impl World {
    /// No live registrar holds a PE that is not live (its node down or hung, or not
    /// registered): nothing dead is handed out.
    pub fn only_live_pes(&self) -> Result<(), String> {
        let mut live = BTreeSet::new();
        for n in &self.nodes {
            let NodeCore::Pe(pe) = &n.core else { continue };
            if n.down || n.muted {
                continue;
            }
            for (id, status) in pe.status() {
                if status == rserpool_proto::PeStatus::Registered {
                    live.insert(id);
                }
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let NodeCore::Reg(r) = &n.core else { continue };
            if n.down || n.muted {
                continue;
            }
            let hs = r.handlespace();
            for h in hs.pools() {
                if let Some(e) = hs.pool_entries(h).find(|e| !live.contains(&e.pe.id)) {
                    return Err(format!(
                        "registrar {i} holds {:?} in {h:?}, not live",
                        e.pe.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Run every registrar's handlespace index check now (a cheaper alternative to
    /// checking after every event, for large worlds).
    pub fn check_handlespaces_now(&self) {
        for n in &self.nodes {
            if let NodeCore::Reg(r) = &n.core {
                if !n.down {
                    r.handlespace().check_invariants();
                }
            }
        }
    }
}
