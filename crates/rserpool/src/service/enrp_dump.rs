//! A one-shot ENRP client that reads a registrar's whole handlespace (`rsp dump --enrp`).
//!
//! It behaves like RSPLIB's `hsdump`: it connects to the registrar's ENRP endpoint (TCP, or
//! SCTP with PPID 12), introduces itself as a peer with an ENRP_PRESENCE (a random server
//! ID unless one is given, checksum 0, a Server Information naming the local end of the
//! connection — RSPLIB's registrar answers a handle table request only from a peer it
//! knows, and only keeps a peer whose presence names addresses of the association), then
//! sends ENRP_HANDLE_TABLE_REQUEST with W = 0 (the whole handlespace, not only the
//! registrar's own PEs). Each response carries part of the table; while it says M = 1
//! (more to send) the client asks again with the same request, as `hsdump` does (the
//! registrar remembers where it stopped for this peer). A response with R = 1 (rejected)
//! is retried after a short wait, a few times, then reported.
//!
//! Everything is bounded: each wait for data ([`EnrpDumpOptions::timeout`]), the number
//! of PEs ([`EnrpDumpOptions::max_pes`]) and of responses
//! ([`EnrpDumpOptions::max_responses`]). A PE sent twice (e.g. the table changed between
//! two responses) is kept once, as last sent. Other ENRP messages the registrar sends
//! meanwhile (presences, list requests, updates) are ignored; the connection is closed at
//! the end, which the registrar sees as a peer going away.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rserpool_proto::handlespace::Bookkeeping;
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_wire::{
    decode_enrp, encode_enrp, EnrpMessage, LifetimeUnit, PeId, PoolElement, PoolEntry, PoolHandle,
    Protocol, ServerId, ServerInfo, TransportAddr, TransportUse,
};

use super::admin::{pe_doc, DumpDoc, PoolDoc};
use crate::transport::sctp::SctpMessageStream;
use crate::transport::tcp::TcpMessageStream;
use crate::transport::{MessageRead, MessageStream, MessageWrite, Outgoing, TransportConfig};

/// Default of [`EnrpDumpOptions::max_pes`].
pub const DEFAULT_MAX_PES: usize = 1_000_000;
/// Default of [`EnrpDumpOptions::max_responses`].
pub const DEFAULT_MAX_RESPONSES: usize = 100_000;
/// Default of [`EnrpDumpOptions::reject_retries`].
pub const DEFAULT_REJECT_RETRIES: u32 = 3;
/// Default of [`EnrpDumpOptions::retry_wait`].
pub const DEFAULT_RETRY_WAIT: Duration = Duration::from_millis(500);

/// What to read and the bounds of the transfer.
#[derive(Clone, Debug)]
pub struct EnrpDumpOptions {
    /// The registrar's ENRP endpoint (`tcp://…:9901` or `sctp://…:9901`).
    pub endpoint: Endpoint,
    /// Give up when nothing arrives for this long (connecting included).
    pub timeout: Duration,
    /// Stop with an error beyond this many PEs.
    pub max_pes: usize,
    /// Stop with an error beyond this many responses.
    pub max_responses: usize,
    /// Retries after a rejected (R = 1) request before giving up.
    pub reject_retries: u32,
    /// Wait before such a retry.
    pub retry_wait: Duration,
    /// Our server ID in the exchange; `None` = random non-zero.
    pub server_id: Option<ServerId>,
}

impl EnrpDumpOptions {
    /// Defaults for `endpoint`: 5 s per wait, the `DEFAULT_*` bounds, a random server ID.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            timeout: Duration::from_secs(5),
            max_pes: DEFAULT_MAX_PES,
            max_responses: DEFAULT_MAX_RESPONSES,
            reject_retries: DEFAULT_REJECT_RETRIES,
            retry_wait: DEFAULT_RETRY_WAIT,
            server_id: None,
        }
    }
}

/// Why the handlespace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnrpDumpError {
    #[error("cannot reach the registrar's ENRP endpoint {endpoint}: {error}")]
    Unreachable { endpoint: String, error: io::Error },
    #[error("no answer from {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("the registrar closed the connection before the handle table was complete")]
    Closed,
    #[error(
        "the registrar rejected the handle table request {tries} times (R = 1: it does not \
         take us as a peer)"
    )]
    Rejected { tries: u32 },
    #[error("the handle table has more than {limit} {what}; stopped")]
    TooLarge { limit: usize, what: &'static str },
    #[error("the registrar sent an ENRP_ERROR: {0}")]
    ErrorReceived(String),
    #[error("undecodable ENRP message from the registrar: {0}")]
    Malformed(String),
    #[error("{0} is not an ENRP transport (tcp:// or sctp://)")]
    Unsupported(String),
    #[error("ENRP connection failed: {0}")]
    Io(#[from] io::Error),
}

/// A registrar's handlespace as its handle table responses carried it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrpHandlespace {
    /// The registrar's server ID (sender of the responses).
    pub registrar: ServerId,
    /// Our server ID in the exchange.
    pub client: ServerId,
    /// Pools in handle order, PEs in ID order.
    pub pools: Vec<PoolEntry>,
    /// Handle table responses received (rejections included).
    pub responses: usize,
    /// Rejections (R = 1) before the table came.
    pub rejections: u32,
}

impl EnrpHandlespace {
    /// PEs in all pools.
    pub fn pe_count(&self) -> usize {
        self.pools.iter().map(|p| p.pes.len()).sum()
    }

    /// As the admin dump's document (what `rsp dump` prints). The handle table carries
    /// no ages, reports or keep-alive times: those stay empty. `unit` reads the
    /// Registration Life fields.
    pub fn to_doc(&self, unit: LifetimeUnit) -> DumpDoc {
        let none = Bookkeeping::default();
        let now = crate::clock::now();
        let pools: Vec<PoolDoc> = self
            .pools
            .iter()
            .map(|p| PoolDoc {
                handle: p.handle.to_string(),
                policy: p
                    .pes
                    .first()
                    .map(|pe| pe.policy.policy_type().to_string())
                    .unwrap_or_default(),
                pes: p
                    .pes
                    .iter()
                    .map(|pe| pe_doc(pe, &none, now, unit))
                    .collect(),
            })
            .collect();
        DumpDoc {
            server_id: self.registrar.to_string(),
            pool_count: pools.len(),
            pe_count: pools.iter().map(|p| p.pes.len()).sum(),
            pools,
            counters: Vec::new(),
            connections: Default::default(),
            protections: Vec::new(),
            // The handle table does not say where the registrar is in its start-up.
            enrp: super::admin::EnrpDoc {
                phase: "unknown".into(),
                peers: Vec::new(),
                counters: Vec::new(),
            },
            tls: Vec::new(),
            message_length: Default::default(),
        }
    }
}

/// Read the whole handlespace of the registrar at `opts.endpoint`.
pub async fn fetch(opts: &EnrpDumpOptions) -> Result<EnrpHandlespace, EnrpDumpError> {
    let endpoint = opts.endpoint.to_string();
    let unreachable = |error| EnrpDumpError::Unreachable {
        endpoint: endpoint.clone(),
        error,
    };
    let config = TransportConfig::default();
    match opts.endpoint.transport {
        TransportProto::Tcp | TransportProto::Mptcp => {
            let stream = within(opts.timeout, connect_tcp(&opts.endpoint.addrs))
                .await
                .map_err(unreachable)?;
            let local = stream.local_addr()?;
            let me = TransportAddr::tcp(local.port(), local.ip());
            let mptcp = opts.endpoint.transport == TransportProto::Mptcp;
            let s = TcpMessageStream::new(stream, Protocol::Enrp, config.max_message_len, mptcp);
            exchange(s, me, opts).await
        }
        TransportProto::Sctp => {
            let stream = within(
                opts.timeout,
                crate::sctp::SctpStream::connect_from(&[], &opts.endpoint.addrs),
            )
            .await
            .map_err(unreachable)?;
            let local = stream.local_addrs()?;
            let port = local.first().map_or(0, SocketAddr::port);
            let mut ips: Vec<_> = local.iter().map(SocketAddr::ip).collect();
            ips.dedup();
            let me = TransportAddr::sctp(port, TransportUse::DATA_ONLY, ips);
            let s = SctpMessageStream::new(stream, Protocol::Enrp, config.max_message_len);
            exchange(s, me, opts).await
        }
        TransportProto::Udp | TransportProto::Tls => Err(EnrpDumpError::Unsupported(endpoint)),
    }
}

async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        )),
    }
}

async fn connect_tcp(addrs: &[SocketAddr]) -> io::Result<tokio::net::TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn send<W: MessageWrite>(w: &mut W, m: &EnrpMessage) -> io::Result<()> {
    let mut bytes = Vec::new();
    encode_enrp(m, &mut bytes);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    w.send(&[Outgoing {
        protocol: Protocol::Enrp,
        bytes,
    }])
    .await
}

async fn exchange<S: MessageStream>(
    stream: S,
    me: TransportAddr,
    opts: &EnrpDumpOptions,
) -> Result<EnrpHandlespace, EnrpDumpError> {
    let (mut rd, mut wr) = stream.into_split();
    let client = match opts.server_id {
        Some(id) if id.0 != 0 => id,
        _ => ServerId((crate::random_seed() as u32).max(1)),
    };
    let presence = EnrpMessage::Presence {
        reply_required: false,
        sender: client,
        receiver: ServerId(0),
        checksum: Some(0),
        server_info: Some(ServerInfo {
            server_id: client,
            transport: me,
        }),
    };
    let request = EnrpMessage::HandleTableRequest {
        own_children_only: false,
        sender: client,
        receiver: ServerId(0),
    };
    send(&mut wr, &presence).await?;
    send(&mut wr, &request).await?;
    let mut out = EnrpHandlespace {
        client,
        ..EnrpHandlespace::default()
    };
    let mut table: BTreeMap<PoolHandle, BTreeMap<PeId, PoolElement>> = BTreeMap::new();
    let mut pes = 0usize;
    loop {
        let got = match tokio::time::timeout(opts.timeout, rd.recv()).await {
            Err(_) => {
                return Err(EnrpDumpError::Timeout {
                    endpoint: opts.endpoint.to_string(),
                    timeout: opts.timeout,
                })
            }
            Ok(r) => r?,
        };
        let Some((protocol, bytes)) = got else {
            return Err(EnrpDumpError::Closed);
        };
        if protocol != Protocol::Enrp {
            continue; // e.g. ASAP on an SCTP association: not for us.
        }
        let msg = decode_enrp(&bytes)
            .map_err(|e| EnrpDumpError::Malformed(e.to_string()))?
            .message;
        match msg {
            EnrpMessage::HandleTableResponse {
                reject: true,
                sender,
                ..
            } => {
                out.registrar = sender;
                out.responses += 1;
                out.rejections += 1;
                if out.rejections > opts.reject_retries {
                    return Err(EnrpDumpError::Rejected {
                        tries: out.rejections,
                    });
                }
                tokio::time::sleep(opts.retry_wait).await;
                send(&mut wr, &presence).await?;
                send(&mut wr, &request).await?;
            }
            EnrpMessage::HandleTableResponse {
                more,
                sender,
                pools,
                ..
            } => {
                out.registrar = sender;
                out.responses += 1;
                if out.responses > opts.max_responses {
                    return Err(EnrpDumpError::TooLarge {
                        limit: opts.max_responses,
                        what: "responses",
                    });
                }
                for p in pools {
                    let pool = table.entry(p.handle).or_default();
                    for pe in p.pes {
                        if pool.insert(pe.id, pe).is_none() {
                            pes += 1;
                        }
                    }
                }
                if pes > opts.max_pes {
                    return Err(EnrpDumpError::TooLarge {
                        limit: opts.max_pes,
                        what: "PEs",
                    });
                }
                if !more {
                    break;
                }
                send(&mut wr, &request).await?;
            }
            EnrpMessage::Error { error, .. } => {
                return Err(EnrpDumpError::ErrorReceived(error.to_string()));
            }
            _ => {}
        }
    }
    let _ = wr.close().await;
    out.pools = table
        .into_iter()
        .map(|(handle, pes)| PoolEntry {
            handle,
            pes: pes.into_values().collect(),
        })
        .collect();
    Ok(out)
}
