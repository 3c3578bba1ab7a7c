//! The registrar's DNS view of its pools (`rsp registrar --dns udp://[::]:5353`), for
//! clients that know DNS but not RSerPool.
//!
//! Names live under a zone (default [`DEFAULT_ZONE`], `pool.rserpool.`):
//!
//! * `POOL.pool.rserpool.` — `A` / `AAAA`: the addresses of PEs of pool `POOL` chosen by
//!   the pool's policy, exactly as an ASAP handle resolution chooses them (round robin
//!   moves on with each query); `SRV`: one record per chosen PE with its port and the
//!   target `pe-XXXXXXXX.POOL.pool.rserpool.` (its address in the additional section);
//!   `ANY`: A and AAAA. Leading labels starting with `_` are skipped, so
//!   `_http._tcp.POOL.pool.rserpool. SRV` works too.
//! * `pe-XXXXXXXX.POOL.pool.rserpool.` — that one PE (`XXXXXXXX` = its identifier, 8 hex
//!   digits).
//! * A pool handle with several labels (`a.b`) is written as such; a handle that is not
//!   made of DNS labels (any byte outside letters, digits, `-`, `_`; empty labels; longer
//!   than 63 bytes) is written as `x--` followed by its bytes in hex, split into labels
//!   of at most 60 digits if needed: `x--4563686f20506f6f6c.pool.rserpool.` is
//!   `"Echo Pool"`. DNS names are case-insensitive: a name that matches no handle exactly
//!   is looked up ignoring ASCII case.
//!
//! Answers: authoritative, TTL [`DEFAULT_TTL`] (configurable), only PEs the registrar has
//! now (a removed PE is gone from the next answer; resolvers may keep it for the TTL).
//! Unknown pool or PE: NXDOMAIN. A name outside the zone: REFUSED. A malformed query
//! (bad header, not one question, bad name): FORMERR when the header can be read, else
//! dropped; responses are never answered. An opcode other than QUERY: NOTIMP. UDP only;
//! answers are kept within 512 bytes (TC set when an answer record had to be left out).
//! Each query is one closure run against the registrar core on its driver, one query at a
//! time; each source address (IPv6: its /64) may send [`DEFAULT_PER_SOURCE_RATE`] queries
//! per second, more are dropped, so a flood from a few sources costs the core little.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rserpool_proto::Registrar;
use rserpool_wire::{PeId, PoolElement, PoolHandle, UserTransport};
use tokio::net::UdpSocket;

use crate::driver::DriverHandle;

/// The zone the pools live under.
pub const DEFAULT_ZONE: &str = "pool.rserpool.";
/// TTL of every answer, in seconds.
pub const DEFAULT_TTL: u32 = 5;
/// Most PEs in one answer.
pub const DEFAULT_MAX_ANSWERS: usize = 8;
/// Queries per second from one source (burst of the same size).
pub const DEFAULT_PER_SOURCE_RATE: u32 = 2000;
/// Sources tracked for the rate limit before the table starts over.
const MAX_SOURCES: usize = 65_536;
/// Longest UDP answer (no EDNS).
const MAX_UDP: usize = 512;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

/// The DNS view's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    /// Zone, with or without the final dot.
    pub zone: String,
    pub ttl: u32,
    pub max_answers: usize,
    /// Queries per second per source (IPv6: per /64); 0 = no limit.
    pub per_source_rate: u32,
}

impl DnsConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            zone: DEFAULT_ZONE.into(),
            ttl: DEFAULT_TTL,
            max_answers: DEFAULT_MAX_ANSWERS,
            per_source_rate: DEFAULT_PER_SOURCE_RATE,
        }
    }
}

/// Whether `zone` is a usable zone name (labels of 1..63 letters, digits, `-`, `_`).
pub fn valid_zone(zone: &str) -> bool {
    let z = zone.strip_suffix('.').unwrap_or(zone);
    !z.is_empty() && z.len() < 200 && z.split('.').all(is_plain_label)
}

fn is_plain_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The DNS name of a pool handle under `zone` (see the module docs for the encoding).
pub fn name_of(handle: &PoolHandle, zone: &str) -> String {
    let zone = zone.strip_suffix('.').unwrap_or(zone);
    let bytes = handle.as_bytes();
    let plain = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| s.split('.').all(is_plain_label) && !s.starts_with("x--"));
    let prefix = match plain {
        Some(s) => s.to_owned(),
        None => {
            let hex = hex::encode(bytes);
            let mut labels = Vec::new();
            let mut rest = hex.as_str();
            let mut first = true;
            while !rest.is_empty() || first {
                let take = rest.len().min(60);
                let (a, b) = rest.split_at(take);
                labels.push(if first {
                    format!("x--{a}")
                } else {
                    a.to_owned()
                });
                first = false;
                rest = b;
            }
            labels.join(".")
        }
    };
    format!("{prefix}.{zone}.")
}

/// Bind the DNS socket (IPv6 addresses IPv6-only; inside a tokio runtime).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// A parsed question.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    id: u16,
    rd: bool,
    /// The name's labels as received.
    labels: Vec<Vec<u8>>,
    /// Offset of each label in the query (for compression pointers).
    offsets: Vec<usize>,
    qtype: u16,
    qclass: u16,
    /// End of the question section.
    end: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// Not worth an answer (too short for a header, or a response).
    Drop,
    /// Answer with this rcode (and no question).
    Rcode { id: u16, rd: bool, rcode: u8 },
}

fn parse(q: &[u8]) -> Result<Question, Bad> {
    if q.len() < 12 {
        return Err(Bad::Drop);
    }
    let id = u16::from_be_bytes([q[0], q[1]]);
    let flags = u16::from_be_bytes([q[2], q[3]]);
    let rd = flags & 0x0100 != 0;
    if flags & 0x8000 != 0 {
        return Err(Bad::Drop);
    }
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Err(Bad::Rcode {
            id,
            rd,
            rcode: RCODE_NOTIMP,
        });
    }
    let formerr = Bad::Rcode {
        id,
        rd,
        rcode: RCODE_FORMERR,
    };
    let qd = u16::from_be_bytes([q[4], q[5]]);
    let an = u16::from_be_bytes([q[6], q[7]]);
    let ns = u16::from_be_bytes([q[8], q[9]]);
    if qd != 1 || an != 0 || ns != 0 {
        return Err(formerr);
    }
    let mut at = 12;
    let mut labels = Vec::new();
    let mut offsets = Vec::new();
    let mut total = 0usize;
    loop {
        let Some(&len) = q.get(at) else {
            return Err(formerr);
        };
        if len == 0 {
            at += 1;
            break;
        }
        // No compression in a query's only question; 0x40 / 0x80 are not labels.
        if len & 0xc0 != 0 {
            return Err(formerr);
        }
        let len = usize::from(len);
        let Some(label) = q.get(at + 1..at + 1 + len) else {
            return Err(formerr);
        };
        total += len + 1;
        if total > 254 {
            return Err(formerr);
        }
        offsets.push(at);
        labels.push(label.to_vec());
        at += 1 + len;
    }
    let Some(tc) = q.get(at..at + 4) else {
        return Err(formerr);
    };
    Ok(Question {
        id,
        rd,
        labels,
        offsets,
        qtype: u16::from_be_bytes([tc[0], tc[1]]),
        qclass: u16::from_be_bytes([tc[2], tc[3]]),
        end: at + 4,
    })
}

/// What a name under the zone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// The zone itself.
    Apex,
    Pool {
        handle: PoolHandle,
        /// Index of the pool's first label in the question.
        first: usize,
        pe: Option<PeId>,
    },
    /// Under the zone but not a name we can read (bad `x--` hex).
    Nothing,
}

/// `None`: outside the zone.
fn lookup(labels: &[Vec<u8>], zone: &[Vec<u8>]) -> Option<Lookup> {
    if labels.len() < zone.len() {
        return None;
    }
    let cut = labels.len() - zone.len();
    if !labels[cut..]
        .iter()
        .zip(zone)
        .all(|(a, b)| a.eq_ignore_ascii_case(b))
    {
        return None;
    }
    let mut first = 0;
    while first < cut && labels[first].first() == Some(&b'_') {
        first += 1;
    }
    let mut pe = None;
    if cut - first >= 2 {
        let l = &labels[first];
        if l.len() == 11 && l[..3].eq_ignore_ascii_case(b"pe-") {
            if let Some(id) = std::str::from_utf8(&l[3..])
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            {
                pe = Some(PeId(id));
                first += 1;
            }
        }
    }
    let pool = &labels[first..cut];
    if pool.is_empty() {
        return Some(Lookup::Apex);
    }
    let handle: Vec<u8> = if pool[0].len() >= 3 && pool[0][..3].eq_ignore_ascii_case(b"x--") {
        let mut hex = pool[0][3..].to_vec();
        for l in &pool[1..] {
            hex.extend_from_slice(l);
        }
        match hex::decode(&hex) {
            Ok(h) if !h.is_empty() => h,
            _ => return Some(Lookup::Nothing),
        }
    } else {
        pool.join(&b'.')
    };
    Some(Lookup::Pool {
        handle: PoolHandle::from(handle.as_slice()),
        first,
        pe,
    })
}

fn zone_labels(zone: &str) -> Vec<Vec<u8>> {
    zone.strip_suffix('.')
        .unwrap_or(zone)
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// The addresses of a PE's user transport.
fn addrs_of(pe: &PoolElement) -> (u16, Vec<IpAddr>) {
    match &pe.user_transport {
        UserTransport::Ip(t) => (t.port, t.addrs.clone()),
        _ => (0, Vec::new()),
    }
}

/// Builds an answer.
struct Answer {
    buf: Vec<u8>,
    an: u16,
    ar: u16,
    truncated: bool,
}

impl Answer {
    fn start(q: &Question, query: &[u8], rcode: u8) -> Self {
        let mut buf = Vec::with_capacity(MAX_UDP);
        buf.extend_from_slice(&q.id.to_be_bytes());
        // QR, AA, RD copied.
        let flags: u16 = 0x8000 | 0x0400 | if q.rd { 0x0100 } else { 0 } | u16::from(rcode);
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&query[12..q.end]);
        Self {
            buf,
            an: 0,
            ar: 0,
            truncated: false,
        }
    }

    /// Append one record whose name is `name` (already encoded); `additional` records
    /// that do not fit are left out silently, answer records set TC.
    fn record(&mut self, name: &[u8], rtype: u16, ttl: u32, rdata: &[u8], additional: bool) {
        let len = name.len() + 10 + rdata.len();
        if self.buf.len() + len > MAX_UDP || self.truncated {
            if !additional {
                self.truncated = true;
            }
            return;
        }
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let rdlen = u16::try_from(rdata.len()).unwrap_or(0);
        self.buf.extend_from_slice(&rdlen.to_be_bytes());
        self.buf.extend_from_slice(rdata);
        if additional {
            self.ar += 1;
        } else {
            self.an += 1;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[6..8].copy_from_slice(&self.an.to_be_bytes());
        self.buf[10..12].copy_from_slice(&self.ar.to_be_bytes());
        if self.truncated {
            self.buf[2] |= 0x02;
        }
        self.buf
    }
}

fn rcode_only(id: u16, rd: bool, rcode: u8) -> Vec<u8> {
    let flags: u16 = 0x8000 | if rd { 0x0100 } else { 0 } | u16::from(rcode);
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    b
}

fn pointer(offset: usize) -> [u8; 2] {
    let o = u16::try_from(offset).unwrap_or(0) & 0x3fff;
    (0xc000 | o).to_be_bytes()
}

fn ip_rdata(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The answer to `query` given the PEs the core chose (`None`: no such pool or PE).
fn answer(
    q: &Question,
    query: &[u8],
    first: usize,
    pes: Option<&[PoolElement]>,
    cfg: &DnsConfig,
) -> Vec<u8> {
    let Some(pes) = pes else {
        return Answer::start(q, query, RCODE_NXDOMAIN).finish();
    };
    let mut a = Answer::start(q, query, 0);
    let qname = pointer(12);
    let want = |ip: &IpAddr| match q.qtype {
        TYPE_A => ip.is_ipv4(),
        TYPE_AAAA => ip.is_ipv6(),
        TYPE_ANY => true,
        _ => false,
    };
    if q.qtype == TYPE_SRV {
        // Targets first (their offsets), then the addresses as additional records.
        let pool_at = q.offsets.get(first).copied().unwrap_or(12);
        let mut targets: Vec<(usize, &PoolElement)> = Vec::new();
        for pe in pes.iter().take(cfg.max_answers) {
            let (port, addrs) = addrs_of(pe);
            if addrs.is_empty() {
                continue;
            }
            let label = format!("pe-{:08x}", pe.id.0);
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&0u16.to_be_bytes()); // priority
            rdata.extend_from_slice(&1u16.to_be_bytes()); // weight
            rdata.extend_from_slice(&port.to_be_bytes());
            let target_at = a.buf.len() + 2 + 10 + rdata.len();
            rdata.push(11);
            rdata.extend_from_slice(label.as_bytes());
            rdata.extend_from_slice(&pointer(pool_at));
            let before = a.an;
            a.record(&qname, TYPE_SRV, cfg.ttl, &rdata, false);
            if a.an > before {
                targets.push((target_at, pe));
            }
        }
        for (at, pe) in targets {
            for ip in addrs_of(pe).1 {
                let t = if ip.is_ipv4() { TYPE_A } else { TYPE_AAAA };
                a.record(&pointer(at), t, cfg.ttl, &ip_rdata(ip), true);
            }
        }
        return a.finish();
    }
    let mut seen: Vec<IpAddr> = Vec::new();
    for pe in pes {
        for ip in addrs_of(pe).1 {
            if want(&ip) && !seen.contains(&ip) && seen.len() < cfg.max_answers {
                seen.push(ip);
                let t = if ip.is_ipv4() { TYPE_A } else { TYPE_AAAA };
                a.record(&qname, t, cfg.ttl, &ip_rdata(ip), false);
            }
        }
    }
    a.finish()
}

/// Per-source token buckets.
struct RateLimit {
    rate: f64,
    sources: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimit {
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let key = match ip {
            IpAddr::V6(a) => {
                let mut o = a.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
            v4 => v4,
        };
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&key) {
            self.sources.clear();
        }
        let (tokens, last) = self.sources.entry(key).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Answer queries on `socket` until the registrar's driver stops.
pub async fn serve(socket: UdpSocket, cfg: DnsConfig, core: DriverHandle<Registrar>) {
    let zone = zone_labels(&cfg.zone);
    let mut limit = RateLimit {
        rate: f64::from(cfg.per_source_rate),
        sources: HashMap::new(),
    };
    let mut buf = vec![0u8; 4096];
    let mut dropped: u64 = 0;
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("dns: receive failed: {e}");
                    continue;
                }
            },
            () = core.stopped() => return,
        };
        if !limit.allow(peer.ip(), Instant::now()) {
            dropped += 1;
            if dropped.is_power_of_two() {
                tracing::warn!(%peer, dropped, "dns: query rate limit; dropping queries");
            }
            continue;
        }
        let query = &buf[..n];
        let reply = match parse(query) {
            Err(Bad::Drop) => continue,
            Err(Bad::Rcode { id, rd, rcode }) => rcode_only(id, rd, rcode),
            Ok(q) if q.qclass != CLASS_IN && q.qclass != TYPE_ANY => {
                Answer::start(&q, query, RCODE_REFUSED).finish()
            }
            Ok(q) => match lookup(&q.labels, &zone) {
                None => Answer::start(&q, query, RCODE_REFUSED).finish(),
                Some(Lookup::Apex) => Answer::start(&q, query, 0).finish(),
                Some(Lookup::Nothing) => Answer::start(&q, query, RCODE_NXDOMAIN).finish(),
                Some(Lookup::Pool { handle, first, pe }) => {
                    let n = cfg.max_answers;
                    let picked = core.query(move |c, _| choose(c, &handle, pe, n)).await;
                    let Ok(picked) = picked else { return };
                    answer(&q, query, first, picked.as_deref(), &cfg)
                }
            },
        };
        if let Err(e) = socket.send_to(&reply, peer).await {
            tracing::debug!(%peer, "dns: send failed: {e}");
        }
    }
}

/// Runs on the registrar's driver: the PEs to answer with (`None` = no such pool / PE).
fn choose(
    c: &mut Registrar,
    handle: &PoolHandle,
    pe: Option<PeId>,
    n: usize,
) -> Option<Vec<PoolElement>> {
    let hs = c.handlespace();
    let handle = if hs.pool_len(handle) > 0 {
        handle.clone()
    } else if hs.pool_count() <= 10_000 {
        // DNS is case-insensitive; handles are not.
        hs.pools()
            .find(|h| h.as_bytes().eq_ignore_ascii_case(handle.as_bytes()))?
            .clone()
    } else {
        return None;
    };
    match pe {
        Some(id) => hs.get(&handle, id).map(|e| vec![e.pe.clone()]),
        None => c.select_pes(&handle, n),
    }
}

#[cfg(test)]
mod tests;
