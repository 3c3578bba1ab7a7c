//! Unit tests of the connection table (virtual clock).

use super::*;
use std::net::Ipv4Addr;

/// The base of the virtual clock.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}
fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn drain(t: &mut ConnTable) -> Vec<TransportCommand> {
    std::iter::from_fn(|| t.poll_command()).collect()
}
fn limits(max: usize, per_source: usize, idle: Option<Duration>) -> ConnLimits {
    ConnLimits {
        max_connections: max,
        max_per_source: per_source,
        idle_timeout: idle,
    }
}

#[test]
fn a_full_table_of_connections_that_spoke_once_still_takes_newcomers() {
    // The lockout of issue 8: every slot holds a connection that sent one handle
    // resolution and went quiet.
    let t0 = t0();
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(4, 0, None));
    for n in 1..=4 {
        t.accepted(t0, ConnId(n), ip(2), &mut c);
        t.touch(t0 + ms(n), ConnId(n));
    }
    // A PE registers over connection 5 after evicting the longest idle (1).
    t.accepted(t0 + ms(100), ConnId(5), ip(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(1))]);
    t.touch(t0 + ms(101), ConnId(5));
    t.set_owner(ConnId(5), true);
    // More newcomers push out the attacker's connections, never the PE's.
    for n in 6..=12 {
        t.accepted(t0 + ms(100 + n), ConnId(n), ip(2), &mut c);
        t.touch(t0 + ms(100 + n), ConnId(n));
        let cmds = drain(&mut t);
        assert_eq!(cmds.len(), 1);
        assert_ne!(cmds[0], TransportCommand::Abort(ConnId(5)));
        t.check();
    }
    assert!(t.contains(ConnId(5)));
    assert_eq!(t.len(), 4);
    assert_eq!(c.evicted, 8);
    assert_eq!(c.refused, 0);
}

#[test]
fn eviction_order_silent_first_then_longest_idle_and_refusal_when_all_own_pes() {
    let t0 = t0();
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(3, 0, None));
    t.accepted(t0, ConnId(1), ip(1), &mut c); // will speak
    t.accepted(t0 + ms(10), ConnId(2), ip(1), &mut c); // never speaks
    t.accepted(t0 + ms(20), ConnId(3), ip(1), &mut c); // will speak
    t.touch(t0 + ms(30), ConnId(1));
    t.touch(t0 + ms(40), ConnId(3));
    // Connection 2 has been silent for less than the grace: the longest idle goes,
    // which is 2 too (accepted at 10 ms, before 1 spoke at 30 ms).
    t.accepted(t0 + ms(50), ConnId(4), ip(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(2))]);
    // Now 4 is silent and young, 1 spoke longest ago: 1 goes, not the newcomer 4.
    t.accepted(t0 + ms(60), ConnId(5), ip(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(1))]);
    // Past the grace a silent connection goes before ones that spoke more recently:
    // 4 and 5 have been silent for over a second; the older one (4) goes.
    t.touch(t0 + SILENT_GRACE + ms(100), ConnId(3));
    t.accepted(t0 + SILENT_GRACE + ms(100), ConnId(6), ip(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(4))]);
    t.check();
    // Everybody owns PEs: the newcomer is refused.
    for n in [3, 5, 6] {
        t.touch(t0 + SILENT_GRACE + ms(200), ConnId(n));
        t.set_owner(ConnId(n), true);
    }
    t.accepted(t0 + SILENT_GRACE + ms(300), ConnId(7), ip(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(7))]);
    assert!(!t.contains(ConnId(7)));
    assert_eq!((c.evicted, c.refused), (3, 1));
    // A PE leaves connection 5: it can be evicted again.
    t.set_owner(ConnId(5), false);
    t.accepted(t0 + SILENT_GRACE + ms(400), ConnId(8), ip(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(5))]);
    t.check();
}

#[test]
fn per_source_cap_replaces_the_sources_own_idle_connection() {
    let t0 = t0();
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(100, 3, None));
    for n in 1..=3 {
        t.accepted(t0 + ms(n), ConnId(n), ip(2), &mut c);
        t.touch(t0 + ms(10 + n), ConnId(n));
    }
    // Another source is not affected.
    t.accepted(t0 + ms(20), ConnId(10), ip(3), &mut c);
    assert!(drain(&mut t).is_empty());
    // A fourth from 127.0.0.2 replaces that source's longest idle one (1) …
    t.touch(t0 + ms(21), ConnId(1)); // … unless it just spoke: then 2.
    t.accepted(t0 + ms(30), ConnId(4), ip(2), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(2))]);
    assert_eq!(t.from_source(ip(2)), 3);
    assert_eq!(t.from_source(ip(3)), 1);
    // PEs are never evicted: with all three owning PEs the newcomer is refused.
    for n in [1, 3, 4] {
        t.set_owner(ConnId(n), true);
    }
    t.accepted(t0 + ms(40), ConnId(5), ip(2), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(5))]);
    assert_eq!((c.source_evicted, c.refused, c.evicted), (1, 1, 0));
    t.check();
    let r = t.poll_report(t0 + ms(40)).unwrap();
    assert_eq!(r.capped_source, Some(Source::of(ip(2))));
    assert_eq!((r.source_evicted, r.refused, r.open), (1, 1, 4));
    t.closed(ConnId(10));
    assert_eq!(t.from_source(ip(3)), 0);
    t.check();
}

#[test]
fn ipv6_sources_are_64_prefixes() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(Source::of(a), Source::of(b));
    assert_ne!(Source::of(a), Source::of(other));
    assert_eq!(Source::of(mapped), Source::of("10.0.0.1".parse().unwrap()));
    assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    let t0 = t0();
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(0, 1, None));
    t.accepted(t0, ConnId(1), a, &mut c);
    t.accepted(t0, ConnId(2), b, &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Abort(ConnId(1))]);
    t.accepted(t0, ConnId(3), other, &mut c);
    assert!(drain(&mut t).is_empty());
}

#[test]
fn idle_connections_without_pes_are_closed_with_one_deadline() {
    let t0 = t0();
    let idle = Duration::from_secs(30);
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(0, 0, Some(idle)));
    assert_eq!(t.poll_timeout(), None);
    t.accepted(t0, ConnId(1), ip(1), &mut c); // silent
    t.accepted(t0, ConnId(2), ip(1), &mut c); // a PU that resolves now and then
    t.accepted(t0, ConnId(3), ip(1), &mut c); // a PE
    t.touch(t0 + ms(5), ConnId(3));
    t.set_owner(ConnId(3), true);
    assert_eq!(t.poll_timeout(), Some(t0 + idle));
    // Activity on 2 before the deadline.
    t.touch(t0 + Duration::from_secs(20), ConnId(2));
    // A spurious early call does nothing.
    t.handle_timeout(t0 + Duration::from_secs(10), &mut c);
    assert!(drain(&mut t).is_empty());
    t.handle_timeout(t0 + idle, &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Close(ConnId(1))]);
    assert_eq!(t.poll_report(t0 + idle).map(|r| r.idle_closed), Some(1));
    // Next deadline: 2's last activity + 30 s.
    let due = t0 + Duration::from_secs(50);
    assert_eq!(t.poll_timeout(), Some(due));
    t.handle_timeout(due - ms(1), &mut c);
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(due));
    t.handle_timeout(due, &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Close(ConnId(2))]);
    // The PE's connection stays, however long it is quiet …
    t.handle_timeout(t0 + Duration::from_secs(3600), &mut c);
    assert!(drain(&mut t).is_empty());
    assert!(t.contains(ConnId(3)));
    assert_eq!(c.idle_closed, 2);
    // … until its last PE is gone: then it is idle from that moment.
    let gone = t0 + Duration::from_secs(3600);
    t.set_owner(ConnId(3), false);
    t.handle_timeout(gone + idle - ms(1), &mut c);
    assert!(drain(&mut t).is_empty());
    t.handle_timeout(gone + idle + Duration::from_secs(1), &mut c);
    assert_eq!(drain(&mut t), vec![TransportCommand::Close(ConnId(3))]);
    assert!(t.is_empty());
    t.check();
}

#[test]
fn reports_are_rate_limited() {
    let t0 = t0();
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(1, 0, None));
    t.accepted(t0, ConnId(1), ip(1), &mut c);
    assert_eq!(t.poll_report(t0), None);
    t.accepted(t0, ConnId(2), ip(1), &mut c);
    let r = t.poll_report(t0).unwrap();
    assert_eq!((r.evicted, r.open), (1, 1));
    // A burst within the period: one summary at its end.
    for n in 3..103 {
        t.accepted(t0 + ms(n), ConnId(n), ip(1), &mut c);
        assert_eq!(t.poll_report(t0 + ms(n)), None);
    }
    assert_eq!(t.poll_timeout(), Some(t0 + REPORT_PERIOD));
    let r = t.poll_report(t0 + REPORT_PERIOD).unwrap();
    assert_eq!(r.evicted, 100);
    assert_eq!(t.poll_report(t0 + REPORT_PERIOD * 5), None);
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(c.evicted, 101);
}

#[test]
fn random_operations_keep_the_lists_consistent() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let t0 = t0();
    let mut c = ConnCounters::default();
    let mut t = ConnTable::new(limits(40, 12, Some(Duration::from_secs(5))));
    let mut now = t0;
    let mut next = 1u64;
    let mut open: Vec<ConnId> = Vec::new();
    for _ in 0..20_000 {
        now += ms(rng.gen_range(0..50));
        match rng.gen_range(0..10) {
            0..=2 => {
                let conn = ConnId(next);
                next += 1;
                t.accepted(now, conn, ip(rng.gen_range(1..6)), &mut c);
                open.push(conn);
            }
            3..=5 if !open.is_empty() => {
                let k = open[rng.gen_range(0..open.len())];
                t.touch(now, k);
            }
            6 if !open.is_empty() => {
                let k = open[rng.gen_range(0..open.len())];
                t.set_owner(k, rng.gen_bool(0.5));
            }
            7 if !open.is_empty() => {
                let k = open.swap_remove(rng.gen_range(0..open.len()));
                t.closed(k);
            }
            _ => t.handle_timeout(now, &mut c),
        }
        for cmd in drain(&mut t) {
            let (TransportCommand::Close(k) | TransportCommand::Abort(k)) = cmd else {
                panic!("the connection table never connects: {cmd:?}");
            };
            assert!(!t.contains(k));
            open.retain(|x| *x != k);
        }
        assert!(t.len() <= 40);
        t.check();
    }
    assert!(c.evicted + c.source_evicted + c.idle_closed > 0);
}
