//! The registrar's handlespace dump (what `rsp dump` reads) and the JSON documents it
//! streams.
//!
//! The registrar serves its handlespace on its admin listener (default 127.0.0.1:9990,
//! loopback only), which speaks HTTP ([`super::http_admin`]: `GET /v1/handlespace`, what
//! `rsp dump` uses) and, for older clients, line-JSON over TCP on the same port: the
//! client sends one line (`dump`, `{"request":"dump"}` or
//! `{"request":"dump","pools":["EchoPool"]}`), the registrar answers with one JSON document
//! ([`DumpDoc`]) on one line and closes. The first byte tells the two apart. See
//! `docs/shell.md` for why this is not an ASAP or ENRP message.
//!
//! The registrar never copies the whole handlespace at once: [`dump_pages`] takes it from
//! the core in pages of [`DUMP_PAGE_PES`] PEs (one driver query each, so ASAP traffic is
//! served between pages), turns each page into JSON on the admin task ([`DumpWriter`]) and
//! writes it to the socket before taking the next. Memory stays proportional to one page
//! and a slow reader only slows its own dump. The price: a dump of a changing handlespace
//! is not one atomic snapshot (each PE appears at most once; PEs added or removed during
//! the dump may or may not appear); `pool_count` and `pe_count` count what was written.

use std::time::{Duration, Instant};

use rserpool_proto::registrar::{PoolSnapshot, SnapshotCursor};
use rserpool_proto::Counters;
use rserpool_proto::Registrar;
use rserpool_wire::LifetimeUnit;
use rserpool_wire::{PoolHandle, ServerId};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::driver::DriverHandle;

pub use super::registrar::{ADMIN_PORT, DEFAULT_ADMIN};

mod doc;
pub use doc::*;

// ----------------------------------------------------------------------------------------
// The registrar side

/// Most PEs copied out of the registrar core per step of a dump.
pub const DUMP_PAGE_PES: usize = 100;
/// A dump request waits this long for its turn (see
/// [`super::http_admin::registrar::DUMP_SESSIONS`]).
const ADMIN_WAIT: Duration = Duration::from_secs(5);
/// A reader that takes nothing for this long loses its dump.
const ADMIN_WRITE_STALL: Duration = Duration::from_secs(30);
/// Longest request line, and most pools one request names.
const MAX_REQUEST: u64 = 64 * 1024;
const MAX_REQUEST_POOLS: usize = 1000;

/// Writes a [`DumpDoc`] as JSON page by page: `begin`, `page`… (taking the bytes after
/// each), `finish`. Consecutive pages may continue the same pool.
#[derive(Debug)]
pub struct DumpWriter {
    buf: Vec<u8>,
    unit: LifetimeUnit,
    open: Option<PoolHandle>,
    pool_count: usize,
    pe_count: usize,
    first_pe: bool,
}

impl DumpWriter {
    pub fn begin(server_id: ServerId, unit: LifetimeUnit) -> Self {
        let mut buf = br#"{"server_id":"#.to_vec();
        json_into(&mut buf, &server_id.to_string());
        buf.extend_from_slice(br#","pools":["#);
        Self {
            buf,
            unit,
            open: None,
            pool_count: 0,
            pe_count: 0,
            first_pe: true,
        }
    }

    /// Append a page taken at `now`.
    pub fn page(&mut self, pools: &[PoolSnapshot], now: Instant) {
        for p in pools {
            if self.open.as_ref() != Some(&p.handle) {
                if self.open.is_some() {
                    self.buf.extend_from_slice(b"]},");
                }
                self.buf.extend_from_slice(br#"{"handle":"#);
                json_into(&mut self.buf, &p.handle.to_string());
                self.buf.extend_from_slice(br#","policy":"#);
                json_into(&mut self.buf, &p.policy.to_string());
                self.buf.extend_from_slice(br#","pes":["#);
                self.open = Some(p.handle.clone());
                self.pool_count += 1;
                self.first_pe = true;
            }
            for (pe, bk) in &p.pes {
                if !self.first_pe {
                    self.buf.push(b',');
                }
                self.first_pe = false;
                json_into(&mut self.buf, &pe_doc(pe, bk, now, self.unit));
                self.pe_count += 1;
            }
        }
    }

    /// Close the document (counters, connections, protections, ENRP, counts, newline);
    /// `open` = accepted connections open now.
    pub fn finish(
        &mut self,
        counters: &Counters,
        open: Option<usize>,
        enrp: &EnrpDoc,
        tls: &[TlsListenerDoc],
        lengths: &MessageLengthDoc,
    ) {
        let counters_all = counters;
        if self.open.take().is_some() {
            self.buf.extend_from_slice(b"]}");
        }
        let counters: Vec<CounterDoc> = counters
            .by_type()
            .map(|(message, received, sent)| CounterDoc {
                message: message.to_owned(),
                received,
                sent,
            })
            .collect();
        self.buf.extend_from_slice(br#"],"counters":"#);
        json_into(&mut self.buf, &counters);
        self.buf.extend_from_slice(br#","connections":"#);
        json_into(&mut self.buf, &ConnectionsDoc::new(counters_all, open));
        self.buf.extend_from_slice(br#","protections":"#);
        json_into(&mut self.buf, &ProtectionDoc::list(counters_all));
        self.buf.extend_from_slice(br#","enrp":"#);
        json_into(&mut self.buf, enrp);
        self.buf.extend_from_slice(br#","tls":"#);
        json_into(&mut self.buf, tls);
        self.buf.extend_from_slice(br#","message_length":"#);
        json_into(&mut self.buf, lengths);
        self.buf.extend_from_slice(
            format!(
                r#","pool_count":{},"pe_count":{}}}"#,
                self.pool_count, self.pe_count
            )
            .as_bytes(),
        );
        self.buf.push(b'\n');
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

fn json_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, v: &T) {
    // Serializing plain strings, numbers and derived structs cannot fail.
    let _ = serde_json::to_writer(&mut *buf, v);
}

/// The pools a requested name stands for: the handle spelled by the text, and for
/// `0x…` also the handle with those bytes.
pub fn pool_candidates(name: &str) -> Vec<PoolHandle> {
    let mut out = vec![PoolHandle::from(name)];
    if let Some(bytes) = name
        .strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| !b.is_empty())
    {
        out.push(PoolHandle::new(bytes));
    }
    out
}

#[derive(Deserialize)]
struct Request {
    request: String,
    #[serde(default)]
    pools: Vec<String>,
}

pub(crate) async fn admin_session(
    stream: TcpStream,
    handle: &DriverHandle<Registrar>,
    unit: LifetimeUnit,
    turns: &tokio::sync::Semaphore,
    hub: &super::http_admin::events::Hub,
) -> anyhow::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd).take(MAX_REQUEST);
    tokio::time::timeout(Duration::from_secs(5), rd.read_line(&mut line)).await??;
    let text = line.trim();
    let request = if text == "dump" {
        Ok(Request {
            request: "dump".into(),
            pools: Vec::new(),
        })
    } else {
        serde_json::from_str::<Request>(text).map_err(|e| format!("bad request: {e}"))
    };
    let request = request.and_then(|r| {
        if r.request != "dump" {
            Err(format!("unknown request {:?}; try \"dump\"", r.request))
        } else if r.pools.len() > MAX_REQUEST_POOLS {
            Err(format!("at most {MAX_REQUEST_POOLS} pools per request"))
        } else {
            Ok(r)
        }
    });
    let permit = match &request {
        Ok(_) => tokio::time::timeout(ADMIN_WAIT, turns.acquire())
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => None,
    };
    let request = match (request, permit.is_some()) {
        (Ok(r), true) => r,
        (Ok(_), false) => {
            let busy =
                serde_json::json!({ "error": "busy: too many admin sessions at once; try again" });
            return send(&mut wr, format!("{busy}\n").into_bytes(), true).await;
        }
        (Err(msg), _) => {
            let e = serde_json::json!({ "error": msg });
            return send(&mut wr, format!("{e}\n").into_bytes(), true).await;
        }
    };
    let _permit = permit;
    let lengths = hub.length_doc();
    dump_pages(
        handle,
        unit,
        &request.pools,
        (&hub.tls_docs(), &lengths),
        &mut wr,
    )
    .await?;
    send(&mut wr, Vec::new(), true).await
}

/// Where [`dump_pages`] puts each page of the document.
pub(crate) trait PageSink {
    fn put(&mut self, bytes: Vec<u8>) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

impl PageSink for tokio::net::tcp::OwnedWriteHalf {
    async fn put(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        send(self, bytes, false).await
    }
}

/// The handlespace dump ([`DumpDoc`], one line of JSON) of `pools` (all for an empty
/// list), taken from the core page by page, each page written to `out` before the next
/// is taken.
pub(crate) async fn dump_pages(
    handle: &DriverHandle<Registrar>,
    unit: LifetimeUnit,
    pools: &[String],
    (tls, lengths): (&[TlsListenerDoc], &MessageLengthDoc),
    out: &mut impl PageSink,
) -> anyhow::Result<()> {
    let server_id = handle.query(|c: &mut Registrar, _| c.server_id()).await?;
    let mut w = DumpWriter::begin(server_id, unit);
    let mut core = CoreTime::default();
    if pools.is_empty() {
        let mut cursor: Option<SnapshotCursor> = None;
        loop {
            let from = cursor.take();
            let (pools, next, now, took) = handle
                .query(move |c: &mut Registrar, now| {
                    let t = Instant::now();
                    let (pools, next) = c.snapshot_page(from.as_ref(), DUMP_PAGE_PES);
                    (pools, next, now, t.elapsed())
                })
                .await?;
            core.add(took);
            w.page(&pools, now);
            drop(pools);
            out.put(w.take()).await?;
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    } else {
        let wanted: std::collections::BTreeSet<PoolHandle> =
            pools.iter().flat_map(|n| pool_candidates(n)).collect();
        for h in wanted {
            let mut after = None;
            loop {
                let pool = h.clone();
                let (page, next, now, took) = handle
                    .query(move |c: &mut Registrar, now| {
                        let t = Instant::now();
                        let (p, next) = c.pool_snapshot_page(&pool, after, DUMP_PAGE_PES);
                        (p, next, now, t.elapsed())
                    })
                    .await?;
                core.add(took);
                if let Some(p) = page {
                    w.page(std::slice::from_ref(&p), now);
                }
                out.put(w.take()).await?;
                match next {
                    Some(n) => after = Some(n.after),
                    None => break,
                }
            }
        }
    }
    let (counters, open, enrp) = handle
        .query(|c: &mut Registrar, now| {
            (
                c.counters().clone(),
                c.connections().len(),
                EnrpDoc::of(c, now),
            )
        })
        .await?;
    w.finish(&counters, Some(open), &enrp, tls, lengths);
    out.put(w.take()).await?;
    tracing::debug!(
        "dump: {} PEs of {} pools in {} pages; the registrar core spent {:?} on it, at most \
         {:?} at a time",
        w.pe_count,
        w.pool_count,
        core.pages,
        core.total,
        core.longest
    );
    Ok(())
}

/// Time the registrar core spent copying pages out.
#[derive(Debug, Default)]
struct CoreTime {
    pages: usize,
    total: Duration,
    longest: Duration,
}

impl CoreTime {
    fn add(&mut self, d: Duration) {
        self.pages += 1;
        self.total += d;
        self.longest = self.longest.max(d);
    }
}

/// Write `bytes` (a reader stalled for [`ADMIN_WRITE_STALL`] ends the session); `last`
/// closes the connection afterwards.
async fn send(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: Vec<u8>,
    last: bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(ADMIN_WRITE_STALL, async {
        wr.write_all(&bytes).await?;
        if last {
            wr.shutdown().await?;
        }
        Ok::<(), std::io::Error>(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the admin client stopped reading"))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserpool_proto::io::{ConnId, Core, RecvMeta, TransportProto};
    use rserpool_proto::registrar::{EnrpPhase, PeerInfo};
    use rserpool_proto::EnrpCounters;
    use rserpool_proto::RegistrarConfig;
    use rserpool_wire::{AsapMessage, PeId, Policy, PoolElement, Protocol};
    use rserpool_wire::{TransportAddr, UserTransport};
    use std::net::SocketAddr;

    fn registrar(pools: &[(&[u8], u32)]) -> (Registrar, Instant) {
        let now = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default(), 1);
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let meta = RecvMeta {
            protocol: Protocol::Asap,
            transport: TransportProto::Tcp,
            peer,
            peer_addrs: vec![peer.ip()],
            identity: None,
        };
        for (handle, n) in pools {
            for id in 1..=*n {
                let msg = AsapMessage::Registration {
                    handle: PoolHandle::from(*handle),
                    pe: PoolElement {
                        id: PeId(id * 7),
                        home_registrar: ServerId(0),
                        registration_life: 30_000,
                        user_transport: UserTransport::Ip(TransportAddr::tcp(
                            4000 + id as u16,
                            "127.0.0.1".parse().unwrap(),
                        )),
                        policy: Policy::LeastUsed { load: id * 1000 },
                        asap_transport: None,
                    },
                };
                r.handle_message(now, ConnId(1), &meta, &msg.encode_to_vec());
            }
        }
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
        (r, now)
    }

    fn paged(r: &Registrar, now: Instant, size: usize) -> Vec<u8> {
        let mut w = DumpWriter::begin(r.server_id(), LifetimeUnit::Milliseconds);
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let (pools, next) = r.snapshot_page(cursor.as_ref(), size);
            w.page(&pools, now);
            out.extend(w.take());
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        w.finish(
            &r.counters(),
            None,
            &EnrpDoc::of(r, now),
            &[],
            &MessageLengthDoc::default(),
        );
        out.extend(w.take());
        out
    }

    #[test]
    fn a_paged_dump_is_the_same_document_as_a_whole_one() {
        let (r, now) = registrar(&[(b"b", 5), (b"a\"quote", 1), (b"\x01\x02", 3), (b"c", 4)]);
        let whole = DumpDoc::new(
            &r.snapshot(),
            &r.counters(),
            EnrpDoc::of(&r, now),
            now,
            LifetimeUnit::Milliseconds,
        );
        assert_eq!(whole.pe_count, 13);
        for size in [1, 2, 4, 5, 13, 1000] {
            let bytes = paged(&r, now, size);
            assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1, "one line");
            assert!(bytes.ends_with(b"}\n"));
            let doc: DumpDoc = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("page size {size}: {e}\n{}", String::from_utf8_lossy(&bytes))
            });
            assert_eq!(doc, whole, "page size {size}");
        }
        // An empty handlespace.
        let (r, now) = registrar(&[]);
        let doc: DumpDoc = serde_json::from_slice(&paged(&r, now, 3)).unwrap();
        assert_eq!((doc.pool_count, doc.pe_count, doc.pools.len()), (0, 0, 0));
    }

    #[test]
    fn peers_show_in_the_document_and_the_table() {
        use rserpool_proto::io::Endpoint;
        use rserpool_proto::registrar::PeerState;
        let now = Instant::now();
        let peers = [
            PeerInfo {
                server_id: ServerId(0x1234),
                endpoint: Some(Endpoint::tcp("127.0.0.1:9901".parse().unwrap())),
                state: PeerState::Active,
                last_heard: now.checked_sub(Duration::from_millis(1500)),
                checksum_expected: 0xbeef,
                checksum_reported: Some(0xbeef),
                owned_pes: 7,
                mentor: true,
            },
            PeerInfo {
                server_id: ServerId(0),
                endpoint: Some(Endpoint::tcp("127.0.0.1:9902".parse().unwrap())),
                state: PeerState::Unidentified,
                last_heard: None,
                checksum_expected: 0,
                checksum_reported: None,
                owned_pes: 0,
                mentor: false,
            },
        ];
        let counters = EnrpCounters {
            takeovers_won: 2,
            ..EnrpCounters::default()
        };
        let doc = EnrpDoc::new(EnrpPhase::Synchronizing, &peers, &counters, now);
        assert_eq!(doc.counters.len(), 1);
        assert_eq!(doc.phase, "synchronizing");
        assert_eq!(doc.peers[0].last_heard_ms, Some(1500));
        assert_eq!(doc.peers[0].checksum_expected, "0xbeef");
        assert_eq!(doc.peers[1].checksum_reported, None);
        let back: EnrpDoc = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        let table = doc.table();
        assert!(table.starts_with("peers (2):\nPEER"), "{table}");
        assert!(
            table.contains("0x00001234") && table.contains("1.5s ago") && table.contains("mentor"),
            "{table}"
        );
        assert!(
            table.contains("unidentified") && table.contains("never"),
            "{table}"
        );
        // A document without the enrp member (an older registrar) still reads.
        let old: DumpDoc = serde_json::from_str(
            r#"{"server_id":"0x1","pool_count":0,"pe_count":0,"pools":[],"counters":[]}"#,
        )
        .unwrap();
        assert_eq!(old.enrp, EnrpDoc::default());
    }

    #[test]
    fn pool_names_match_text_and_hex_handles() {
        assert_eq!(
            pool_candidates("EchoPool"),
            vec![PoolHandle::from("EchoPool")]
        );
        assert_eq!(
            pool_candidates("0x0102"),
            vec![PoolHandle::from("0x0102"), PoolHandle::new(vec![1, 2])]
        );
        assert_eq!(pool_candidates("0xzz"), vec![PoolHandle::from("0xzz")]);
    }
}
