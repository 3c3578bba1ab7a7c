//! Snapshots of the handlespace as plain data: whole (`Registrar::snapshot`) and in pages
//! (`snapshot_page`, `pool_snapshot_page`) for `rsp dump` and the admin channel.

use rserpool_wire::{PeId, PolicyType, PoolElement, PoolHandle, ServerId};

use super::Registrar;
use crate::handlespace::Bookkeeping;

/// One pool in a [`HandlespaceSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// The pool handle.
    pub handle: PoolHandle,
    /// The pool's overall policy type.
    pub policy: PolicyType,
    /// PEs by PE ID, with the registrar's bookkeeping.
    pub pes: Vec<(PoolElement, Bookkeeping)>,
}

/// The whole handlespace at one moment (for `rsp dump`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlespaceSnapshot {
    /// The registrar that took the snapshot.
    pub server_id: ServerId,
    /// Every pool, sorted by handle.
    pub pools: Vec<PoolSnapshot>,
}

/// Where a paged snapshot ([`Registrar::snapshot_page`]) continues: after PE `after` of
/// pool `handle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotCursor {
    pub handle: PoolHandle,
    pub after: PeId,
}

/// Snapshots.
impl Registrar {
    /// The handlespace as plain data.
    pub fn snapshot(&self) -> HandlespaceSnapshot {
        let pools = self
            .hs
            .pools()
            .map(|h| PoolSnapshot {
                handle: h.clone(),
                policy: self.hs.pool_policy(h).unwrap_or(PolicyType::ROUND_ROBIN),
                pes: self
                    .hs
                    .pool_entries(h)
                    .map(|e| (e.pe.clone(), e.bookkeeping.clone()))
                    .collect(),
            })
            .collect();
        HandlespaceSnapshot {
            server_id: self.server_id,
            pools,
        }
    }

    /// At most `max_pes` (≥ 1) PEs of the handlespace, in pool handle then PE ID order,
    /// starting after `from`; also the cursor of the next page (`None` = done). A pool may
    /// continue on the next page (same handle). Pages taken at different moments are not
    /// one atomic snapshot: each PE appears at most once, PEs added or removed in between
    /// may or may not appear.
    pub fn snapshot_page(
        &self,
        from: Option<&SnapshotCursor>,
        max_pes: usize,
    ) -> (Vec<PoolSnapshot>, Option<SnapshotCursor>) {
        let handles: Box<dyn Iterator<Item = &PoolHandle>> = match from {
            Some(c) => Box::new(self.hs.pools_from(&c.handle)),
            None => Box::new(self.hs.pools()),
        };
        let mut left = max_pes.max(1);
        let mut pools = Vec::new();
        for h in handles {
            let after = from.filter(|c| &c.handle == h).map(|c| c.after);
            let (pool, next) = self.pool_page(h, after, left);
            if let Some(p) = pool {
                left -= p.pes.len();
                pools.push(p);
            }
            if next.is_some() || left == 0 {
                let next = next.or_else(|| {
                    pools.last().and_then(|p| {
                        p.pes.last().map(|(pe, _)| SnapshotCursor {
                            handle: p.handle.clone(),
                            after: pe.id,
                        })
                    })
                });
                return (pools, next);
            }
        }
        (pools, None)
    }

    /// At most `max_pes` (≥ 1) PEs of one pool after PE `after`, and the cursor of the
    /// next page of this pool (`None` = the pool is done or unknown).
    pub fn pool_snapshot_page(
        &self,
        handle: &PoolHandle,
        after: Option<PeId>,
        max_pes: usize,
    ) -> (Option<PoolSnapshot>, Option<SnapshotCursor>) {
        self.pool_page(handle, after, max_pes.max(1))
    }

    fn pool_page(
        &self,
        handle: &PoolHandle,
        after: Option<PeId>,
        max_pes: usize,
    ) -> (Option<PoolSnapshot>, Option<SnapshotCursor>) {
        let mut entries = self.hs.pool_entries_after(handle, after);
        let pes: Vec<(PoolElement, Bookkeeping)> = entries
            .by_ref()
            .take(max_pes)
            .map(|e| (e.pe.clone(), e.bookkeeping.clone()))
            .collect();
        let more = entries.next().is_some();
        let next = match pes.last() {
            Some((pe, _)) if more => Some(SnapshotCursor {
                handle: handle.clone(),
                after: pe.id,
            }),
            _ => None,
        };
        if pes.is_empty() {
            return (None, None);
        }
        let pool = PoolSnapshot {
            handle: handle.clone(),
            policy: self
                .hs
                .pool_policy(handle)
                .unwrap_or(PolicyType::ROUND_ROBIN),
            pes,
        };
        (Some(pool), next)
    }
}
