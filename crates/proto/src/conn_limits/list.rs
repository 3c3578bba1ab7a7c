//! The intrusive doubly linked lists of the connection table: connection slots are linked
//! through index fields (`prev`/`next` for the global silent / idle lists, `sprev`/`snext`
//! for their source's list), so moving a connection to a list's tail is O(1) and allocates
//! nothing.

use std::time::Instant;

use crate::io::ConnId;

pub(super) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    /// Accepted, no message yet (in `silent` and its source's list).
    Silent,
    /// Spoke, owns no PE (in `idle` and its source's list).
    Idle,
    /// Owns at least one PE: in no list, never closed by the table.
    Owner,
}

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) conn: ConnId,
    pub(super) source: u32,
    pub(super) state: State,
    /// Accept, last message, or the moment it stopped owning PEs.
    pub(super) last: Instant,
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) sprev: u32,
    pub(super) snext: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct List {
    pub(super) head: u32,
    pub(super) tail: u32,
}

impl List {
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
}

/// Which pair of links a list uses.
#[derive(Clone, Copy)]
pub(super) enum Links {
    Global,
    Source,
}

fn links(s: &mut Slot, which: Links) -> (&mut u32, &mut u32) {
    match which {
        Links::Global => (&mut s.prev, &mut s.next),
        Links::Source => (&mut s.sprev, &mut s.snext),
    }
}

pub(super) fn push_back(slots: &mut [Slot], list: &mut List, i: u32, which: Links) {
    let tail = list.tail;
    {
        let (p, n) = links(&mut slots[i as usize], which);
        *p = tail;
        *n = NIL;
    }
    if tail == NIL {
        list.head = i;
    } else {
        *links(&mut slots[tail as usize], which).1 = i;
    }
    list.tail = i;
}

pub(super) fn unlink(slots: &mut [Slot], list: &mut List, i: u32, which: Links) {
    let (prev, next) = {
        let (p, n) = links(&mut slots[i as usize], which);
        let r = (*p, *n);
        *p = NIL;
        *n = NIL;
        r
    };
    if prev == NIL {
        list.head = next;
    } else {
        *links(&mut slots[prev as usize], which).1 = next;
    }
    if next == NIL {
        list.tail = prev;
    } else {
        *links(&mut slots[next as usize], which).0 = prev;
    }
}
