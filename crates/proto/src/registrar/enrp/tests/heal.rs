//! After a partition heals: a PE two registrars both claim, and the connections of a peer
//! removed as dead.

use super::*;

/// Two homes for one PE (a false takeover during a partition): a re-synchronisation
/// keeps it with the registrar the election prefers, which tells the other with an
/// ADD_PE; the other side yields. Both sides decide alike, so when they re-synchronise
/// with each other at once the claims do not swap (which made each purge the PE).
#[test]
fn a_pe_claimed_by_two_homes_stays_with_the_one_the_election_prefers() {
    let mut r = registrar(|_| {});
    let now = won_takeover_of_two(&mut r); // ME owns PEs 1 and 2 now
    assert_eq!(ids(&r, "p"), vec![(1, ME), (2, ME)]);
    let block = |i: u32| rserpool_wire::checksum::pe_block_sum(&PoolHandle::from("p"), PeId(i));
    let resync = |r: &mut Registrar, from: ServerId, pe_id: u32| {
        let mut sum = rserpool_wire::PeChecksum::new();
        sum.add_sum(block(pe_id));
        let mut p = presence(from, Some(sum.value()), false);
        if let EnrpMessage::Presence { sender, .. } = &mut p {
            *sender = from;
        }
        send(r, now, 2, &p);
        let out = enrp_out(r);
        assert!(
            out.iter().any(|(_, m)| matches!(
                m,
                EnrpMessage::HandleTableRequest { own_children_only: true, receiver, .. }
                    if *receiver == from
            )),
            "{out:?}"
        );
        let resp = EnrpMessage::HandleTableResponse {
            reject: false,
            more: false,
            sender: from,
            receiver: ME,
            pools: vec![PoolEntry {
                handle: PoolHandle::from("p"),
                pes: vec![pe(pe_id, from, Policy::RoundRobin)],
            }],
        };
        send(r, now, 2, &resp);
        enrp_out(r)
    };
    // HIGH claims PE 1: we are preferred (lowest wins), so we keep it and tell HIGH.
    let out = resync(&mut r, HIGH, 1);
    assert_eq!(ids(&r, "p"), vec![(1, ME), (2, ME)]);
    assert!(
        out.iter().any(|(_, m)| matches!(
            m,
            EnrpMessage::HandleUpdate { action, receiver, pe, .. }
                if *action == UpdateAction::ADD_PE && *receiver == HIGH
                    && pe.id == PeId(1) && pe.home_registrar == ME
        )),
        "{out:?}"
    );
    assert_eq!(r.counters().enrp.contested_kept, 1);
    // LOW claims PE 2: LOW is preferred, so it moves there; nothing is purged.
    resync(&mut r, LOW, 2);
    assert_eq!(ids(&r, "p"), vec![(1, ME), (2, LOW)]);
    assert_eq!(r.counters().enrp.contested_kept, 1);
    assert_eq!(r.counters().enrp.resync_purged, 0);
}

/// A peer removed as dead has its connections closed: one that outlived a partition
/// would deliver late (TCP back-off) after the heal, and the peer would look dead again.
#[test]
fn a_dead_peers_connection_is_closed() {
    let now = t0();
    let mut r = registrar(|_| {});
    r.handle_transport(
        now,
        TransportEvent::Accepted {
            conn: ConnId(1),
            meta: enrp_meta(),
        },
    );
    send(&mut r, now, 1, &presence(LOW, None, false));
    drain(&mut r);
    while r.poll_command().is_some() {}
    // Silent: probed, then dead; it owns nothing, so it is removed at once.
    r.handle_timeout(now + Duration::from_secs(5));
    r.handle_timeout(now + Duration::from_secs(10));
    let cmds: Vec<_> = std::iter::from_fn(|| r.poll_command()).collect();
    assert!(
        cmds.iter()
            .any(|c| matches!(c, crate::io::TransportCommand::Close(ConnId(1)))),
        "{cmds:?}"
    );
    assert!(r.peers().is_empty());
}
