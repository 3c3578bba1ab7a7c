//! The shell's hard connection limit (file descriptors).
//!
//! At most `limit` accepted connections are open at once. A connection counts as *silent*
//! until it delivers its first whole message. When the limit is reached, a new connection
//! evicts the oldest silent one (so connections that never speak — a port scan, a flood of
//! idle sockets — cannot lock out real clients); if every open connection has spoken, the
//! new one is closed at once. The lock is taken on accept, on a connection's first message
//! and on close — never per message.
//!
//! This is the safety net, not the policy. A core that knows more decides which
//! connections to close itself and asks the driver to
//! ([`TransportCommand`](rserpool_proto::io::TransportCommand)): the registrar keeps an
//! idle timeout, a per-source cap and an eviction order that spares connections with PEs
//! ([`rserpool_proto::conn_limits`]). For the two not to fight, the shell's limit sits
//! above the core's ([`ConnLimits::shell_limit`](rserpool_proto::ConnLimits::shell_limit)):
//! the core evicts first, and this limit acts only when a flood of connections outruns the
//! core's closes. Alone (a limit equal to the core's) it would shut out every newcomer
//! once all connections had spoken — the lockout the core's limits prevent.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rserpool_proto::io::ConnId;

use super::ConnCtl;

#[derive(Debug)]
pub struct Admission {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Open accepted connections.
    open: HashSet<ConnId>,
    /// The silent ones among them, oldest (lowest id) first.
    silent: BTreeMap<ConnId, Arc<ConnCtl>>,
    evicted: u64,
}

/// Held by a connection's reader task; frees the slot when dropped.
#[derive(Debug)]
pub struct AdmitGuard {
    admission: Arc<Admission>,
    conn: ConnId,
    silent: bool,
}

impl Admission {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the sets inconsistent in a way that
        // matters more than refusing service, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a new connection, evicting the oldest silent one if full; `None` = refuse.
    pub fn admit(self: &Arc<Self>, conn: ConnId, ctl: &Arc<ConnCtl>) -> Option<AdmitGuard> {
        let mut st = self.lock();
        if st.open.len() >= self.limit {
            let (old, old_ctl) = st.silent.pop_first()?;
            st.open.remove(&old);
            st.evicted += 1;
            old_ctl.cancel();
            tracing::debug!(evicted = %old, for_conn = %conn, "connection limit: closed a silent connection");
        }
        st.open.insert(conn);
        st.silent.insert(conn, ctl.clone());
        Some(AdmitGuard {
            admission: self.clone(),
            conn,
            silent: true,
        })
    }

    /// Open accepted connections.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Silent connections closed to make room so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

impl AdmitGuard {
    /// The connection delivered a message: it can no longer be evicted.
    pub fn spoke(&mut self) {
        if self.silent {
            self.silent = false;
            self.admission.lock().silent.remove(&self.conn);
        }
    }
}

impl Drop for AdmitGuard {
    fn drop(&mut self) {
        let mut st = self.admission.lock();
        st.open.remove(&self.conn);
        st.silent.remove(&self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_silent_then_refuses() {
        let adm = Admission::new(2);
        let c1 = ConnCtl::new();
        let c2 = ConnCtl::new();
        let c3 = ConnCtl::new();
        let mut g1 = adm.admit(ConnId(1), &c1).unwrap();
        let g2 = adm.admit(ConnId(2), &c2).unwrap();
        g1.spoke();
        // Full: conn 2 is the oldest silent one.
        let mut g3 = adm.admit(ConnId(3), &c3).unwrap();
        assert!(*c2.subscribe().borrow());
        assert!(!*c1.subscribe().borrow());
        assert_eq!(adm.open(), 2);
        drop(g2); // the evicted connection's task ends: must not free a second slot
        assert_eq!(adm.open(), 2);
        g3.spoke();
        // Everybody spoke: refuse.
        assert!(adm.admit(ConnId(4), &ConnCtl::new()).is_none());
        drop(g1);
        assert!(adm.admit(ConnId(5), &ConnCtl::new()).is_some());
        assert_eq!(adm.evicted(), 1);
    }
}
