use super::*;
use rserpool_wire::{Policy, ServerId, TransportAddr};

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.trim_end_matches('.').split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

fn pe(id: u32, ip: &str, port: u16) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(1),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(port, ip.parse().unwrap())),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn zone() -> Vec<Vec<u8>> {
    zone_labels(DEFAULT_ZONE)
}

#[test]
fn names_map_to_pools() {
    let q = parse(&query("EchoPool.pool.rserpool", TYPE_A)).unwrap();
    assert_eq!(
        lookup(&q.labels, &zone()),
        Some(Lookup::Pool {
            handle: "EchoPool".into(),
            first: 0,
            pe: None
        })
    );
    let q = parse(&query(
        "_http._tcp.pe-0000002a.EchoPool.POOL.rserpool.",
        TYPE_SRV,
    ))
    .unwrap();
    assert_eq!(
        lookup(&q.labels, &zone()),
        Some(Lookup::Pool {
            handle: "EchoPool".into(),
            first: 3,
            pe: Some(PeId(42))
        })
    );
    let q = parse(&query("pool.rserpool", TYPE_A)).unwrap();
    assert_eq!(lookup(&q.labels, &zone()), Some(Lookup::Apex));
    let q = parse(&query("example.com", TYPE_A)).unwrap();
    assert_eq!(lookup(&q.labels, &zone()), None);
    let q = parse(&query("x--zz.pool.rserpool", TYPE_A)).unwrap();
    assert_eq!(lookup(&q.labels, &zone()), Some(Lookup::Nothing));
}

#[test]
fn handles_that_are_not_labels_are_hex_encoded() {
    for h in [
        &b"Echo Pool"[..],
        b"a.b",
        b"EchoPool",
        b"\x00\xff",
        &[b'z'; 64][..],
        b"x--tricky",
    ] {
        let handle = PoolHandle::from(h);
        let name = name_of(&handle, DEFAULT_ZONE);
        let q = parse(&query(&name, TYPE_A)).unwrap();
        match lookup(&q.labels, &zone()) {
            Some(Lookup::Pool { handle: got, .. }) => assert_eq!(got, handle, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        name_of(&"Echo Pool".into(), DEFAULT_ZONE),
        "x--4563686f20506f6f6c.pool.rserpool."
    );
    assert_eq!(name_of(&"EchoPool".into(), "example"), "EchoPool.example.");
}

#[test]
fn malformed_queries_get_formerr_or_nothing() {
    assert_eq!(parse(&[0; 5]), Err(Bad::Drop));
    let mut response = query("a.pool.rserpool", TYPE_A);
    response[2] |= 0x80;
    assert_eq!(parse(&response), Err(Bad::Drop));
    let formerr = |q: &[u8]| {
        matches!(
            parse(q),
            Err(Bad::Rcode {
                rcode: RCODE_FORMERR,
                ..
            })
        )
    };
    let good = query("a.pool.rserpool", TYPE_A);
    assert!(formerr(&good[..good.len() - 1]), "cut type/class");
    assert!(formerr(&good[..14]), "cut label");
    let mut two = good.clone();
    two[5] = 2;
    assert!(formerr(&two), "two questions");
    let mut ptr = good.clone();
    ptr[12] = 0xc0;
    assert!(formerr(&ptr), "pointer");
    let mut long = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(formerr(&long), "name over 255");
    let mut notify = good.clone();
    notify[2] = 0x20; // opcode 4
    assert!(matches!(
        parse(&notify),
        Err(Bad::Rcode {
            rcode: RCODE_NOTIMP,
            ..
        })
    ));
}

fn rr_count(a: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([a[6], a[7]]),
        u16::from_be_bytes([a[10], a[11]]),
    )
}

#[test]
fn answers_carry_the_chosen_pes() {
    let cfg = DnsConfig::new("[::1]:0".parse().unwrap());
    let pes = vec![
        pe(1, "127.0.0.1", 8001),
        pe(2, "::1", 8002),
        pe(3, "127.0.0.2", 8003),
    ];
    let raw = query("EchoPool.pool.rserpool", TYPE_A);
    let q = parse(&raw).unwrap();
    let a = answer(&q, &raw, 0, Some(&pes), &cfg);
    assert_eq!(a[3] & 0x0f, 0);
    assert_eq!(rr_count(&a), (2, 0));
    assert!(a.ends_with(&[127, 0, 0, 2]));
    let raw = query("EchoPool.pool.rserpool", TYPE_AAAA);
    let q = parse(&raw).unwrap();
    assert_eq!(rr_count(&answer(&q, &raw, 0, Some(&pes), &cfg)), (1, 0));
    let raw = query("EchoPool.pool.rserpool", TYPE_SRV);
    let q = parse(&raw).unwrap();
    let a = answer(&q, &raw, 0, Some(&pes), &cfg);
    assert_eq!(rr_count(&a), (3, 3));
    let raw = query("Nope.pool.rserpool", TYPE_A);
    let q = parse(&raw).unwrap();
    let a = answer(&q, &raw, 0, None, &cfg);
    assert_eq!(a[3] & 0x0f, RCODE_NXDOMAIN);
    assert_eq!(rr_count(&a), (0, 0));
}

#[test]
fn big_answers_stay_within_512_bytes() {
    let cfg = DnsConfig {
        max_answers: 100,
        ..DnsConfig::new("[::1]:0".parse().unwrap())
    };
    let pes: Vec<PoolElement> = (0..100)
        .map(|i| pe(i, &format!("2001:db8::{i:x}"), 80))
        .collect();
    for t in [TYPE_AAAA, TYPE_SRV] {
        let raw = query("EchoPool.pool.rserpool", t);
        let q = parse(&raw).unwrap();
        let a = answer(&q, &raw, 0, Some(&pes), &cfg);
        assert!(a.len() <= MAX_UDP);
        assert_ne!(a[2] & 0x02, 0, "TC");
    }
}

#[test]
fn the_rate_limit_is_per_source() {
    let mut l = RateLimit {
        rate: 10.0,
        sources: HashMap::new(),
    };
    let now = Instant::now();
    let a: IpAddr = "2001:db8::1".parse().unwrap();
    let same64: IpAddr = "2001:db8::2".parse().unwrap();
    let other: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!((0..20).filter(|_| l.allow(a, now)).count(), 10);
    assert!(!l.allow(same64, now));
    assert!(l.allow(other, now));
    assert!(l.allow(a, now + std::time::Duration::from_millis(200)));
}

#[test]
fn zones() {
    assert!(valid_zone("pool.rserpool."));
    assert!(valid_zone("example"));
    assert!(!valid_zone(""));
    assert!(!valid_zone("a..b"));
    assert!(!valid_zone("a b"));
}
