//! Subscriptions end to end in the simulator: a subscribed PU drops a removed PE with the
//! registrar's push, not after its stale-cache interval; without A = 1 it falls back to
//! the stale timer; after losing its registrar it subscribes again. Virtual clock.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::io::Endpoint;
use rserpool_proto::{
    HuntConfig, HuntOrder, PoolElementConfig, PoolUserConfig, PuEvent, RegistrarConfig,
    RegistrarEvent,
};
use rserpool_wire::{asap_type, PeId, Policy, PoolHandle, TransportAddr, UserTransport};

use rserpool_sim::{NodeId, World};

const POOL: &str = "SubPool";

fn new_world() -> World {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    World::new(now, 0)
}

fn reg_endpoint() -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 3863)))
}

fn hunt() -> HuntConfig {
    HuntConfig {
        order: HuntOrder::InOrder,
        ..HuntConfig::default()
    }
}

fn pe_cfg(i: u8) -> PoolElementConfig {
    PoolElementConfig {
        pool_handle: PoolHandle::from(POOL),
        pe_id: Some(PeId(0x1000 + u32::from(i))),
        user_transports: vec![UserTransport::Ip(TransportAddr::tcp(
            7000 + u16::from(i),
            IpAddr::from([10, 0, 1, i]),
        ))],
        policy: Policy::RoundRobin,
        registrars: vec![reg_endpoint()],
        hunt: hunt(),
        ..PoolElementConfig::default()
    }
}

fn pu_cfg(subscribe: bool) -> PoolUserConfig {
    PoolUserConfig {
        registrars: vec![reg_endpoint()],
        hunt: hunt(),
        accept_announces: false,
        stale_cache_value: Duration::from_secs(30),
        hr_items: Some(u32::MAX),
        subscribe,
        ..PoolUserConfig::default()
    }
}

fn cached(w: &mut World, pu: NodeId) -> Vec<PeId> {
    let pool = PoolHandle::from(POOL);
    w.with_pu(pu, |c, now| c.cached(&pool, now))
        .map(|(pes, _)| pes.iter().map(|p| p.id).collect())
        .unwrap_or_default()
}

fn server(w: &mut World, pu: NodeId, req: u64) -> PeId {
    match w.ask(pu, req, POOL, false, Duration::from_secs(10)) {
        PuEvent::Server { pe, .. } => pe.id,
        other => panic!("{other:?}"),
    }
}

fn removed_at(w: &World, reg: NodeId, id: PeId) -> Option<Instant> {
    w.events(reg).iter().find_map(|(t, e)| match e {
        rserpool_sim::Ev::Reg(RegistrarEvent::PeRemoved { pe, .. }) if pe.id == id => Some(*t),
        _ => None,
    })
}

/// Three PEs, a PU that resolved the pool; PE 2 crashes. Returns (time from the
/// registrar removing it to the PU's cache no longer listing it, resolutions sent).
fn crash_one(subscribe: bool, reg_cfg: RegistrarConfig) -> (Duration, u64) {
    let reg_cfg_accepts = reg_cfg.max_subscriptions_per_connection > 0;
    let mut w = new_world();
    let r = w.add_registrar(1, reg_cfg);
    let pes: Vec<NodeId> = (1..=3).map(|i| w.add_pe(i, pe_cfg(i))).collect();
    w.run(Duration::from_secs(1));
    let pu = w.add_pu(1, pu_cfg(subscribe));
    server(&mut w, pu, 1);
    assert_eq!(cached(&mut w, pu).len(), 3);
    let accepts = reg_cfg_accepts;
    assert_eq!(
        w.reg(r).subscriptions(None),
        usize::from(subscribe && accepts)
    );
    w.crash(pes[1]);
    let gone = PeId(0x1002);
    assert!(
        w.run_until(Duration::from_secs(60), |w| removed_at(w, r, gone)
            .is_some())
    );
    let removed = removed_at(&w, r, gone).expect("removed");
    // The PU asks for servers every 100 ms meanwhile (its cache answers while fresh).
    let mut req = 10;
    let seen = loop {
        if !cached(&mut w, pu).contains(&gone) {
            break w.now();
        }
        assert!(w.now() < removed + Duration::from_secs(60), "never dropped");
        req += 1;
        server(&mut w, pu, req);
        w.run(Duration::from_millis(100));
    };
    // From now on the removed PE is never chosen.
    for i in 0..9 {
        assert_ne!(server(&mut w, pu, 1000 + i), gone);
    }
    let hrs = w.reg(r).counters().received(asap_type::HANDLE_RESOLUTION);
    (seen.saturating_duration_since(removed), hrs)
}

#[test]
fn a_subscribed_pu_drops_a_removed_pe_with_the_push() {
    let (delay, hrs) = crash_one(true, RegistrarConfig::default());
    // The push leaves in the input that removed the PE: the next step of the world.
    assert!(delay < Duration::from_millis(150), "{delay:?}");
    // One resolution for the whole run: the subscription kept the entry fresh.
    assert_eq!(hrs, 1);
}

#[test]
fn without_a_subscription_the_stale_timer_applies() {
    // The registrar refuses (A = 0), as RSPLIB's does.
    let cfg = RegistrarConfig {
        max_subscriptions_per_connection: 0,
        ..RegistrarConfig::default()
    };
    let (delay, hrs) = crash_one(true, cfg);
    assert!(delay > Duration::from_secs(20), "{delay:?}");
    assert!(hrs >= 2);
    // And a PU that does not ask.
    let (delay, _) = crash_one(false, RegistrarConfig::default());
    assert!(delay > Duration::from_secs(20), "{delay:?}");
}

#[test]
fn a_pu_subscribes_again_after_its_registrar_restarts() {
    let mut w = new_world();
    let r = w.add_registrar(1, RegistrarConfig::default());
    for i in 1..=2 {
        w.add_pe(i, pe_cfg(i));
    }
    w.run(Duration::from_secs(1));
    let pu = w.add_pu(1, pu_cfg(true));
    server(&mut w, pu, 1);
    assert_eq!(w.reg(r).subscriptions(None), 1);
    w.crash(r);
    w.run(Duration::from_secs(1));
    w.restart(r);
    // The PEs re-register and the PU subscribes again without being asked to.
    assert!(w.run_until(Duration::from_secs(60), |w| {
        w.registrar(r).subscriptions(None) == 1
    }));
    w.take_events(pu);
    // A PE leaves: pushed.
    let pool = PoolHandle::from(POOL);
    w.reg_command(
        r,
        rserpool_proto::RegistrarCommand::RemovePe {
            handle: pool,
            pe_id: PeId(0x1001),
        },
    );
    w.run(Duration::from_millis(100));
    let pushed = w
        .pu_events(pu)
        .iter()
        .any(|(_, e)| matches!(e, PuEvent::Pushed { pes: 1, .. }));
    assert!(pushed);
    assert_eq!(cached(&mut w, pu), vec![PeId(0x1002)]);
}

#[test]
fn an_unused_pool_is_unsubscribed_and_its_answer_not_mistaken() {
    let mut w = new_world();
    let r = w.add_registrar(1, RegistrarConfig::default());
    for i in 1..=2 {
        w.add_pe(i, pe_cfg(i));
    }
    w.run(Duration::from_secs(1));
    let mut cfg = pu_cfg(true);
    cfg.stale_cache_value = Duration::from_secs(5);
    let pu = w.add_pu(1, cfg);
    server(&mut w, pu, 1);
    assert_eq!(w.reg(r).subscriptions(None), 1);
    // Unused for longer than the PU keeps pools (10 × stale, at least a minute): the
    // next request for another pool forgets it and unsubscribes (S = 0) …
    w.run(Duration::from_secs(61));
    let other = w.ask(pu, 2, "Other", false, Duration::from_secs(10));
    assert!(matches!(other, PuEvent::Failed { .. }), "{other:?}");
    // … and a request for it right after gets the real answer, not the S = 0 one.
    assert_eq!(w.reg(r).subscriptions(None), 0);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..4 {
        seen.insert(server(&mut w, pu, 10 + i));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(w.reg(r).subscriptions(None), 1);
}
