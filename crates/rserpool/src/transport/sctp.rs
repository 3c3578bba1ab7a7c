//! Kernel SCTP behind the transport traits: one message per SCTP user message, the
//! protocol from the PPID (ASAP 11, ENRP 12, RSPLIB's legacy values accepted), all of the
//! peer's addresses in [`RecvMeta::peer_addrs`]. The socket work is [`crate::sctp`].

use std::io;

use rserpool_proto::io::{Endpoint, RecvMeta, TransportProto};
use rserpool_wire::Protocol;
use tracing::{debug, warn};

use super::{MessageListener, MessageRead, MessageStream, MessageWrite, Outgoing, TransportConfig};
use crate::sctp::{RecvItem, SctpListener, SctpReadHalf, SctpStream, SctpWriteHalf};

/// An SCTP association carrying ASAP and/or ENRP.
#[derive(Debug)]
pub struct SctpMessageStream {
    stream: SctpStream,
}

impl SctpMessageStream {
    pub fn new(mut stream: SctpStream, max_message_len: usize) -> Self {
        stream.set_max_message_size(max_message_len);
        let _ = stream.set_nodelay(true);
        Self { stream }
    }
}

impl MessageStream for SctpMessageStream {
    type Read = SctpReader;
    type Write = SctpWriter;

    fn meta(&self, protocol: Protocol) -> io::Result<RecvMeta> {
        let peer = self.stream.peer_addr()?;
        let mut peer_addrs = vec![peer.ip()];
        for a in self.stream.peer_addrs().unwrap_or_default() {
            if !peer_addrs.contains(&a.ip()) {
                peer_addrs.push(a.ip());
            }
        }
        Ok(RecvMeta {
            protocol,
            transport: TransportProto::Sctp,
            peer,
            peer_addrs,
        })
    }

    fn into_split(self) -> (SctpReader, SctpWriter) {
        let (r, w) = self.stream.into_split();
        (SctpReader { inner: r }, SctpWriter { inner: w })
    }
}

#[derive(Debug)]
pub struct SctpReader {
    inner: SctpReadHalf,
}

impl MessageRead for SctpReader {
    async fn recv(&mut self) -> io::Result<Option<(Protocol, Vec<u8>)>> {
        loop {
            match self.inner.recv().await {
                Ok(RecvItem::Message { ppid, data, .. }) => match Protocol::from_ppid(ppid) {
                    Some(p) => return Ok(Some((p, data))),
                    None => debug!(ppid, "ignoring a message with an unknown PPID"),
                },
                Ok(RecvItem::Notification(ev)) => debug!(?ev, "SCTP notification"),
                Ok(RecvItem::Eof) => return Ok(None),
                // An over-long message was read to its end and dropped; the association
                // stays usable.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => warn!("{e}"),
                Err(e) => return Err(e),
            }
        }
    }
}

#[derive(Debug)]
pub struct SctpWriter {
    inner: SctpWriteHalf,
}

impl MessageWrite for SctpWriter {
    async fn send(&mut self, batch: &[Outgoing]) -> io::Result<()> {
        for m in batch {
            self.inner.send(m.protocol.ppid(), 0, &m.bytes).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        self.inner.shutdown()
    }
}

/// A (multi-homed) SCTP listener.
#[derive(Debug)]
pub struct SctpMessageListener {
    listener: SctpListener,
    max_message_len: usize,
}

impl MessageListener for SctpMessageListener {
    type Stream = SctpMessageStream;

    async fn accept(&mut self) -> io::Result<SctpMessageStream> {
        let (s, _) = self.listener.accept().await?;
        Ok(SctpMessageStream::new(s, self.max_message_len))
    }

    fn local_endpoint(&self) -> io::Result<Endpoint> {
        Ok(Endpoint::sctp(self.listener.local_addrs()?))
    }
}

/// Bind an SCTP listener to every address of `endpoint` (fails with a clear error on a
/// kernel without SCTP).
pub fn bind(endpoint: &Endpoint, config: &TransportConfig) -> io::Result<SctpMessageListener> {
    Ok(SctpMessageListener {
        listener: SctpListener::bind(&endpoint.addrs)?,
        max_message_len: config.max_message_len,
    })
}

/// Open an association to all addresses of `endpoint`.
pub async fn connect(
    endpoint: &Endpoint,
    config: &TransportConfig,
) -> io::Result<SctpMessageStream> {
    let s = SctpStream::connect(&endpoint.addrs).await?;
    Ok(SctpMessageStream::new(s, config.max_message_len))
}
