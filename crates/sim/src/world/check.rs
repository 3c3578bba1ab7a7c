//! Invariants, checked after every event, and the accounting of gone PEs.

use std::time::{Duration, Instant};

use rserpool_wire::PeId;

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
