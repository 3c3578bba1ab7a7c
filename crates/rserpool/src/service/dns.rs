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
//! (bad header, not one question, bad or compressed name): FORMERR when the header can be
//! read, else dropped; responses are never answered. An opcode other than QUERY: NOTIMP.
//!
//! Messages are parsed and encoded by hickory (`hickory-server`'s request/response types
//! and [`RequestHandler`], `hickory-proto`'s codec); this module only maps names to pools
//! and PEs to records. UDP: answers within 512 bytes, or the requester's EDNS buffer size
//! up to 1232 (TC set when records had to be left out). TCP on the same port: hickory's
//! server (framing, idle timeout). The UDP receive loop is ours, not hickory's: it runs
//! the per-source rate limit before anything is parsed and handles one datagram at a time
//! (hickory's UDP loop spawns a task per datagram, so a flood would queue without bound).
//! Each query is one closure run against the registrar core on its driver, one query at a
//! time; each source address (IPv6: its /64) may send [`DEFAULT_PER_SOURCE_RATE`] queries
//! per second over UDP and TCP together, more are dropped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::MessageType;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SRV};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageRequest, MessageResponseBuilder};
use hickory_server::zone_handler::{MessageResponse, Queries};
use rserpool_proto::Registrar;
use rserpool_wire::{PeId, PoolElement, PoolHandle, UserTransport};
use tokio::net::{TcpListener, UdpSocket};

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
/// Largest UDP answer to a query with EDNS (without EDNS: 512 bytes).
const MAX_EDNS_UDP: u16 = 1232;

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

/// Bind the DNS-over-TCP listener (IPv6 addresses IPv6-only; inside a tokio runtime).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
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

/// What to do with a request hickory has parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Answer with this code and no records.
    Rcode(ResponseCode),
    /// Ask the core for the PEs of a pool (or one of its PEs).
    Pool {
        handle: PoolHandle,
        pe: Option<PeId>,
        /// The question's labels as received and the index of the pool's first label.
        labels: Vec<Vec<u8>>,
        first: usize,
    },
}

/// Whether the (only) question's name, right after the header of `raw`, uses a
/// compression pointer (nothing precedes it that a pointer could sensibly name).
fn compressed_question(raw: &[u8]) -> bool {
    let mut at = 12;
    while let Some(&len) = raw.get(at) {
        if len == 0 {
            return false;
        }
        if len & 0xc0 != 0 {
            return true;
        }
        at += 1 + usize::from(len);
    }
    false
}

/// The checks hickory leaves to the handler, then the zone lookup.
fn plan(msg: &MessageRequest, raw: &[u8], zone: &[Vec<u8>]) -> Plan {
    if msg.metadata.op_code != OpCode::Query {
        return Plan::Rcode(ResponseCode::NotImp);
    }
    let queries = msg.queries.queries();
    if queries.len() != 1
        || !msg.answers.is_empty()
        || !msg.authorities.is_empty()
        || compressed_question(raw)
    {
        return Plan::Rcode(ResponseCode::FormErr);
    }
    let q = queries[0].original();
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        return Plan::Rcode(ResponseCode::Refused);
    }
    let labels: Vec<Vec<u8>> = q.name().iter().map(<[u8]>::to_vec).collect();
    match lookup(&labels, zone) {
        None => Plan::Rcode(ResponseCode::Refused),
        Some(Lookup::Apex) => Plan::Rcode(ResponseCode::NoError),
        Some(Lookup::Nothing) => Plan::Rcode(ResponseCode::NXDomain),
        Some(Lookup::Pool { handle, first, pe }) => Plan::Pool {
            handle,
            pe,
            labels,
            first,
        },
    }
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(name, ttl, rdata)
}

/// The answer and additional records for a question of type `qtype` named `qname`
/// (`labels`, the pool's from `first` on) given the PEs the core chose. Records beyond
/// the message size are left out by hickory's encoder (TC set).
fn records(
    qname: &Name,
    qtype: RecordType,
    labels: &[Vec<u8>],
    first: usize,
    pes: &[PoolElement],
    cfg: &DnsConfig,
) -> (Vec<Record>, Vec<Record>) {
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    if qtype == RecordType::SRV {
        let pool = labels.get(first..).unwrap_or_default();
        for pe in pes.iter().take(cfg.max_answers) {
            let (port, addrs) = addrs_of(pe);
            if addrs.is_empty() {
                continue;
            }
            let label = format!("pe-{:08x}", pe.id.0);
            let Ok(target) = Name::from_labels(
                std::iter::once(label.as_bytes()).chain(pool.iter().map(Vec::as_slice)),
            ) else {
                continue;
            };
            for ip in addrs {
                additionals.push(address_record(target.clone(), cfg.ttl, ip));
            }
            let srv = SRV::new(0, 1, port, target);
            answers.push(Record::from_rdata(qname.clone(), cfg.ttl, RData::SRV(srv)));
        }
        return (answers, additionals);
    }
    let want = |ip: &IpAddr| match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    };
    let mut seen: Vec<IpAddr> = Vec::new();
    for pe in pes {
        for ip in addrs_of(pe).1 {
            if want(&ip) && !seen.contains(&ip) && seen.len() < cfg.max_answers {
                seen.push(ip);
                answers.push(address_record(qname.clone(), cfg.ttl, ip));
            }
        }
    }
    (answers, additionals)
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

/// The view as hickory's request handler: the per-source rate limit first, then the
/// checks, then one closure against the registrar core.
struct View {
    cfg: DnsConfig,
    zone: Vec<Vec<u8>>,
    core: DriverHandle<Registrar>,
    limit: Mutex<RateLimit>,
    dropped: AtomicU64,
    /// One core query at a time: a flood costs the core at most one query's work
    /// between two of its other inputs.
    one: tokio::sync::Semaphore,
}

impl View {
    fn new(cfg: DnsConfig, core: DriverHandle<Registrar>) -> Self {
        Self {
            zone: zone_labels(&cfg.zone),
            limit: Mutex::new(RateLimit {
                rate: f64::from(cfg.per_source_rate),
                sources: HashMap::new(),
            }),
            cfg,
            core,
            dropped: AtomicU64::new(0),
            one: tokio::sync::Semaphore::new(1),
        }
    }

    fn allow(&self, peer: SocketAddr) -> bool {
        let ok = self
            .limit
            .lock()
            .map(|mut l| l.allow(peer.ip(), Instant::now()))
            .unwrap_or(true);
        if !ok {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(%peer, dropped, "dns: query rate limit; dropping queries");
            }
        }
        ok
    }

    /// The PEs to answer with (`None`: no such pool or PE; `Err`: the core is gone).
    async fn pick(
        &self,
        handle: PoolHandle,
        pe: Option<PeId>,
    ) -> Result<Option<Vec<PoolElement>>, ()> {
        let _one = self.one.acquire().await.map_err(|_| ())?;
        let n = self.cfg.max_answers;
        self.core
            .query(move |c, _| choose(c, &handle, pe, n))
            .await
            .map_err(|_| ())
    }
}

/// What a handler returns when it sent nothing.
fn nothing_sent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for View {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let (mut answers, mut additionals) = (Vec::new(), Vec::new());
        match plan(request, request.as_slice(), &self.zone) {
            Plan::Rcode(code) => {
                if matches!(code, ResponseCode::FormErr | ResponseCode::NotImp) {
                    metadata.authoritative = false;
                }
                metadata.response_code = code;
            }
            Plan::Pool {
                handle,
                pe,
                labels,
                first,
            } => match self.pick(handle, pe).await {
                Err(()) => return nothing_sent(request),
                Ok(None) => metadata.response_code = ResponseCode::NXDomain,
                Ok(Some(pes)) => {
                    let q = request.queries.queries()[0].original();
                    (answers, additionals) =
                        records(q.name(), q.query_type(), &labels, first, &pes, &self.cfg);
                }
            },
        }
        // EDNS: answer with an OPT record; UDP answers may then use the requester's
        // buffer size (at most 1232 bytes, the usual safe size), else 512.
        let edns = request.edns.as_ref().map(|e| {
            let mut ours = Edns::new();
            ours.set_max_payload(e.max_payload().clamp(512, MAX_EDNS_UDP));
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let message = builder.build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            std::iter::empty(),
            additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(peer = %request.src(), "dns: send failed: {e}");
                nothing_sent(request)
            }
        }
    }
}

/// Captures the encoded answer of one UDP request (sent by the receive loop).
#[derive(Clone)]
struct UdpReply {
    max: u16,
    out: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(usize::from(self.max));
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(self.max);
        let info = response
            .destructive_emit(&mut enc)
            .map_err(|e| NetError::from(e.to_string()))?;
        if let Ok(mut out) = self.out.lock() {
            *out = Some(buf);
        }
        Ok(info)
    }
}

/// The largest UDP answer to `request`.
fn udp_max(request: &Request) -> u16 {
    request
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, MAX_EDNS_UDP))
}

/// The answer to one datagram (`None`: none). hickory parses and encodes; the view's
/// handler answers.
async fn answer_datagram(view: &View, raw: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    let mut decoder = BinDecoder::new(raw);
    // Too short for a header: no answer. Responses are never answered.
    let header = Header::read(&mut decoder).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let request = match Request::from_bytes(raw.to_vec(), peer, Protocol::Udp) {
        Ok(r) => r,
        Err(_) => {
            let none = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let message = MessageResponseBuilder::new(&none, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let mut buf = Vec::with_capacity(12);
            message
                .destructive_emit(&mut BinEncoder::new(&mut buf))
                .ok()?;
            return Some(buf);
        }
    };
    let reply = UdpReply {
        max: udp_max(&request),
        out: Arc::new(Mutex::new(None)),
    };
    view.handle_request::<_, TokioTime>(&request, reply.clone())
        .await;
    let out = reply.out.lock().ok()?.take();
    out
}

/// How long a DNS-over-TCP connection may stay without a request.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Answer queries on `udp` (and `tcp`, DNS over TCP) until the registrar's driver stops.
pub async fn serve(
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    cfg: DnsConfig,
    core: DriverHandle<Registrar>,
) {
    let view = Arc::new(View::new(cfg, core.clone()));
    // TCP: hickory's server (framing, idle timeout); the same handler, rate limit first.
    let mut server = tcp.map(|l| {
        let mut s = hickory_server::Server::new(ArcView(view.clone()));
        s.register_listener(l, TCP_IDLE, 16);
        s
    });
    // UDP: one datagram at a time, the per-source rate limit before anything is parsed,
    // so a flood from a few sources costs little and queues nothing.
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("dns: receive failed: {e}");
                    continue;
                }
            },
            () = core.stopped() => break,
        };
        if !view.allow(peer) {
            continue;
        }
        let Some(reply) = answer_datagram(&view, &buf[..n], peer).await else {
            continue;
        };
        if let Err(e) = udp.send_to(&reply, peer).await {
            tracing::debug!(%peer, "dns: send failed: {e}");
        }
    }
    if let Some(s) = server.as_mut() {
        if let Err(e) = s.shutdown_gracefully().await {
            tracing::debug!("dns: shutdown: {e}");
        }
    }
}

/// The view shared by the UDP loop and hickory's TCP server.
struct ArcView(Arc<View>);

#[async_trait::async_trait]
impl RequestHandler for ArcView {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        if request.protocol() != Protocol::Udp && !self.0.allow(request.src()) {
            return nothing_sent(request);
        }
        self.0.handle_request::<R, T>(request, response).await
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
