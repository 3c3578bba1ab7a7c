//! The relay: a PE of one pool that serves each request by calling a PE of another pool
//! through a session of its own (the telephony seed's "PE that is a PU of another pool").
//! `rsp serve relay --to EchoPool` joins RelayPool; `rsp call RelayPool` is then answered
//! by an echo PE through it. Each PU session gets its own session to the target pool, so
//! both hops fail over on their own: a dead target PE is replaced by the relay's session,
//! a dead relay by the PU's.
//!
//! Each message from the PU goes to the target pool with its PPID; each message back goes
//! to the PU, and acknowledges the PU's oldest message not acknowledged yet (one answer
//! per request, as echo gives). The relay's session to the target pool is acknowledged
//! and heartbeated like any other; its failover callback does not relay a message again
//! once its answer has come.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::session::{
    Incoming, PeMessage, PeSession, Session, SessionEvent, SessionListener, SessionOptions,
};
use crate::pu::PoolUser;

/// The pool a relay joins unless told otherwise.
pub const DEFAULT_POOL: &str = "RelayPool";

/// Relay every session of `listener` to `target` through `pu`.
pub async fn serve(listener: Arc<SessionListener>, pu: Arc<PoolUser>, target: String) {
    while let Some(s) = listener.accept().await {
        // A PU that is itself a PE sends its own card (§1.12): the relay's pool and its
        // failover list, as the relay's PUs get it.
        let card = listener.business_card();
        tokio::spawn(serve_session(s, pu.clone(), target.clone(), card));
    }
}

async fn serve_session(
    mut s: PeSession,
    pu: Arc<PoolUser>,
    target: String,
    card: Option<(rserpool_wire::PoolHandle, Vec<rserpool_wire::PoolElement>)>,
) {
    let peer = s.peer();
    // The failover callback: a message already answered is not relayed again (its answer
    // came; only the acknowledgement was lost with the target PE).
    let answered = Arc::new(AtomicU64::new(0));
    let seen = answered.clone();
    let mut opts = SessionOptions::default().on_failover(move |_old, unacked| {
        let done = seen.load(Ordering::Relaxed);
        unacked.into_iter().filter(|m| m.seq >= done).collect()
    });
    opts.config.own_card = card;
    let mut up = Session::connect(pu, target.as_str(), opts);
    let mut pending: VecDeque<u32> = VecDeque::new();
    loop {
        tokio::select! {
            m = s.recv() => match m {
                Some(PeMessage::Data { tsn, ppid, data }) => {
                    if up.send(ppid, data).await.is_err() {
                        break;
                    }
                    pending.push_back(tsn);
                }
                Some(PeMessage::CookieEcho(_) | PeMessage::BusinessCard { .. }) => {}
                None => break,
            },
            item = up.next() => match item {
                Some(Incoming::Data { ppid, data }) => {
                    answered.fetch_add(1, Ordering::Relaxed);
                    if s.send(ppid, data).await.is_err() {
                        break;
                    }
                    if let Some(tsn) = pending.pop_front() {
                        let _ = s.ack(tsn);
                    }
                }
                Some(Incoming::Event(SessionEvent::Connected { pe, .. })) => {
                    tracing::info!(%peer, %target, "relay: to PE {pe}");
                }
                Some(Incoming::Event(SessionEvent::FailoverCompleted { old, new, .. })) => {
                    tracing::info!(%peer, %target, %old, "relay: failed over to PE {new}");
                }
                Some(Incoming::Event(SessionEvent::Failed { reason })) => {
                    tracing::warn!(%peer, %target, ?reason, "relay: no PE of the target pool; closing the session");
                    break;
                }
                Some(Incoming::Event(_)) => {}
                None => break,
            },
        }
    }
    up.close();
    s.close();
}
