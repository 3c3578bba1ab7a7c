//! Per-connection inbound queues served in turn: the fairness of the driver.
//!
//! Each connection's reader puts whole messages into the connection's own bounded
//! [`Inbox`] instead of one queue shared by every connection. The driver keeps the
//! connections that have messages waiting in a ring, and whichever task serves the core
//! (a connection reader or the driver task, see [`crate::driver`]) takes one message from
//! each in turn, so a client that pipelines thousands of requests gets one turn per round like a
//! client with one request outstanding: the latter waits behind at most one message of
//! every other busy connection, never behind the whole backlog of a flood.
//!
//! A full inbox stops its reader (which then stops reading the socket: TCP flow control
//! pushes back on the sender). The reader puts an inbox into the ring only when it turns
//! from idle to waiting ([`super::Serve::announce`]), so a busy connection costs one
//! announcement per idle period, not one per message. An inbox is "scheduled" from the
//! moment the reader sends that notice (or the connection is handed to the driver) until
//! the driver finds it empty, so it is in the ring at most once.
//!
//! The end of a connection goes through its inbox as well ([`Item::Closed`]), behind the
//! messages read before it: the driver hears them first, as the peer sent them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rserpool_proto::io::ConnId;
use rserpool_wire::Protocol;
use tokio::sync::Notify;

/// Default of [`crate::driver::DriverConfig::conn_queue`]: messages a connection may have
/// waiting for the driver before its reader stops reading.
pub const DEFAULT_CONN_QUEUE: usize = 32;

/// Bytes a connection may have waiting for the driver (besides a single message, which
/// is always taken) before its reader stops reading.
pub const CONN_QUEUE_BYTES: usize = 256 * 1024;

/// What a reader hands to the driver through its inbox.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Protocol, Vec<u8>),
    /// The reader stopped; nothing follows.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    bytes: usize,
    /// In the driver's ring, or announced to it, or not yet seen by it.
    scheduled: bool,
    /// The reader waits for room.
    waiting: bool,
}

/// One connection's bounded queue towards the driver.
#[derive(Debug)]
pub(crate) struct Inbox {
    pub conn: ConnId,
    /// Messages pushed whose turn at the core has not ended yet (their answers are not
    /// in the connection's output yet), plus one until the driver adopted the connection
    /// (the core knows it): while it is not 0, the reader answers nothing itself.
    unsettled: std::sync::atomic::AtomicUsize,
    cap: usize,
    state: Mutex<State>,
    room: Notify,
}

/// What [`Inbox::push`] did.
#[derive(Debug)]
pub(crate) enum Pushed {
    /// Queued; the driver already knows there is something to take.
    Queued,
    /// Queued into an idle inbox: it must join the ring ([`super::Serve::announce`]).
    Announce,
    /// No room: the item comes back; wait for [`Inbox::room`] and try again.
    Full(Item),
}

impl Inbox {
    /// A new inbox, scheduled: the driver looks at it when it learns of the connection
    /// (so no message can reach the driver before the connection does).
    pub fn new(conn: ConnId, cap: usize) -> Arc<Self> {
        Arc::new(Self {
            conn,
            unsettled: std::sync::atomic::AtomicUsize::new(1),
            cap: cap.max(1),
            state: Mutex::new(State {
                scheduled: true,
                ..State::default()
            }),
            room: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reader's side. `force` queues even when full (the final [`Item::Closed`]).
    pub fn push(&self, item: Item, force: bool) -> Pushed {
        let mut st = self.lock();
        let len = match &item {
            Item::Message(_, b) => b.len(),
            Item::Closed => 0,
        };
        if !force
            && !st.items.is_empty()
            && (st.items.len() >= self.cap || st.bytes + len > CONN_QUEUE_BYTES)
        {
            st.waiting = true;
            return Pushed::Full(item);
        }
        st.bytes += len;
        if matches!(item, Item::Message(..)) {
            self.unsettled
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        st.items.push_back(item);
        if st.scheduled {
            Pushed::Queued
        } else {
            st.scheduled = true;
            Pushed::Announce
        }
    }

    /// Wait until the driver made room after a [`Pushed::Full`] (a wake-up that comes
    /// before this is awaited is kept).
    pub async fn room(&self) {
        self.room.notified().await;
    }

    /// The driver's side: the next item and whether more wait. When none waits the inbox
    /// turns idle (the reader announces it again with its next message).
    pub fn take(&self) -> (Option<Item>, bool) {
        let mut st = self.lock();
        let item = st.items.pop_front();
        if let Some(Item::Message(_, b)) = &item {
            st.bytes -= b.len();
        }
        // The reader waits for room: woken when half the queue is free, so that a
        // pipelining peer's reader runs once per half queue rather than once per message.
        if st.waiting && st.items.len() <= self.cap / 2 {
            st.waiting = false;
            self.room.notify_one();
        }
        let more = !st.items.is_empty();
        if !more {
            st.scheduled = false;
        }
        (item, more)
    }

    /// The driver ended the turn that served one of this inbox's messages (its answers
    /// are in the connection's output).
    pub fn settled(&self) {
        self.unsettled
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Nothing of this connection is queued for the core or in a turn that has not
    /// ended: an answer written now comes after every answer the core gave it.
    pub fn is_settled(&self) -> bool {
        self.unsettled.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// The driver learnt of the connection: whether it must be put in the ring now
    /// (messages arrived before), else it turns idle.
    pub fn adopt(&self) -> bool {
        self.settled();
        let mut st = self.lock();
        let more = !st.items.is_empty();
        st.scheduled = more;
        more
    }
}
