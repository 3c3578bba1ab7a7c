use super::*;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::serialize::binary::BinEncoder;
use rserpool_wire::{Policy, ServerId, TransportAddr};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.trim_end_matches('.').split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// The request as hickory parses it (`None`: hickory answers FORMERR or drops it itself).
fn request(raw: &[u8]) -> Option<Request> {
    Request::from_bytes(raw.to_vec(), "[::1]:5353".parse().unwrap(), Protocol::Udp).ok()
}

fn plan_of(raw: &[u8]) -> Plan {
    let r = request(raw).unwrap();
    plan(&r, r.as_slice(), &zone())
}

fn pool_of(raw: &[u8]) -> Option<Lookup> {
    match plan_of(raw) {
        Plan::Pool {
            handle, first, pe, ..
        } => Some(Lookup::Pool { handle, first, pe }),
        Plan::Rcode(ResponseCode::NoError) => Some(Lookup::Apex),
        Plan::Rcode(ResponseCode::NXDomain) => Some(Lookup::Nothing),
        Plan::Rcode(_) => None,
    }
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
    assert_eq!(
        pool_of(&query("EchoPool.pool.rserpool", TYPE_A)),
        Some(Lookup::Pool {
            handle: "EchoPool".into(),
            first: 0,
            pe: None
        })
    );
    assert_eq!(
        pool_of(&query(
            "_http._tcp.pe-0000002a.EchoPool.POOL.rserpool.",
            TYPE_SRV
        )),
        Some(Lookup::Pool {
            handle: "EchoPool".into(),
            first: 3,
            pe: Some(PeId(42))
        })
    );
    assert_eq!(pool_of(&query("pool.rserpool", TYPE_A)), Some(Lookup::Apex));
    assert_eq!(pool_of(&query("example.com", TYPE_A)), None);
    assert_eq!(
        pool_of(&query("x--zz.pool.rserpool", TYPE_A)),
        Some(Lookup::Nothing)
    );
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
        match pool_of(&query(&name, TYPE_A)) {
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
    // What hickory refuses to parse (it answers FORMERR when it has a header, else drops).
    assert!(request(&[0; 5]).is_none());
    let good = query("a.pool.rserpool", TYPE_A);
    assert!(request(&good[..good.len() - 1]).is_none(), "cut type/class");
    assert!(request(&good[..14]).is_none(), "cut label");
    let mut two = good.clone();
    two[5] = 2;
    assert!(request(&two).is_none(), "two questions");
    let mut long = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(request(&long).is_none(), "name over 255");
    // What the view checks itself.
    let mut ptr = good.clone();
    ptr[12] = 0xc0;
    ptr[13] = 0x08;
    assert_eq!(plan_of(&ptr), Plan::Rcode(ResponseCode::FormErr), "pointer");
    let mut notify = good.clone();
    notify[2] = 0x20; // opcode 4
    assert_eq!(plan_of(&notify), Plan::Rcode(ResponseCode::NotImp));
    let mut chaos = good.clone();
    let n = chaos.len();
    chaos[n - 1] = 3; // class CH
    assert_eq!(plan_of(&chaos), Plan::Rcode(ResponseCode::Refused));
}

/// Encode the response to `raw` as the server does over UDP and parse it back.
fn respond(raw: &[u8], pes: Option<&[PoolElement]>, cfg: &DnsConfig) -> Message {
    let r = request(raw).unwrap();
    let mut metadata = Metadata::response_from_request(&r.metadata);
    metadata.authoritative = true;
    let (answers, additionals) = match (plan(&r, r.as_slice(), &zone()), pes) {
        (Plan::Pool { labels, first, .. }, Some(pes)) => {
            let q = r.queries.queries()[0].original();
            records(q.name(), q.query_type(), &labels, first, pes, cfg)
        }
        _ => {
            metadata.response_code = ResponseCode::NXDomain;
            (Vec::new(), Vec::new())
        }
    };
    let message = MessageResponseBuilder::from_message_request(&r).build(
        metadata,
        answers.iter(),
        std::iter::empty(),
        std::iter::empty(),
        additionals.iter(),
    );
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(512);
    message.destructive_emit(&mut enc).unwrap();
    assert!(buf.len() <= 512);
    Message::from_vec(&buf).unwrap()
}

#[test]
fn answers_carry_the_chosen_pes() {
    let cfg = DnsConfig::new("[::1]:0".parse().unwrap());
    let pes = vec![
        pe(1, "127.0.0.1", 8001),
        pe(2, "::1", 8002),
        pe(3, "127.0.0.2", 8003),
    ];
    let a = respond(&query("EchoPool.pool.rserpool", TYPE_A), Some(&pes), &cfg);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert_eq!((a.answers.len(), a.additionals.len()), (2, 0));
    assert_eq!(a.answers[1].data, RData::A(A("127.0.0.2".parse().unwrap())));
    let a = respond(
        &query("EchoPool.pool.rserpool", TYPE_AAAA),
        Some(&pes),
        &cfg,
    );
    assert_eq!((a.answers.len(), a.additionals.len()), (1, 0));
    let a = respond(&query("EchoPool.pool.rserpool", TYPE_SRV), Some(&pes), &cfg);
    assert_eq!((a.answers.len(), a.additionals.len()), (3, 3));
    let RData::SRV(srv) = &a.answers[0].data else {
        panic!("{a:?}")
    };
    assert_eq!(srv.port, 8001);
    assert_eq!(srv.target.to_ascii(), "pe-00000001.EchoPool.pool.rserpool.");
    assert_eq!(a.additionals[0].name, srv.target);
    let a = respond(&query("Nope.pool.rserpool", TYPE_A), None, &cfg);
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!((a.answers.len(), a.additionals.len()), (0, 0));
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
        let a = respond(&query("EchoPool.pool.rserpool", t), Some(&pes), &cfg);
        assert!(a.metadata.truncation, "TC");
        assert!(!a.answers.is_empty());
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
