//! Helpers shared by the cores: decoding with error reports, the transmit queue, IDs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::RngCore;
use rserpool_wire::{
    decode_asap, decode_enrp, AsapMessage, Cause, CauseCode, EncodeError, EnrpMessage,
    OperationError, Protocol, MAX_REPORTED_INFO,
};

use crate::counters::Counters;
use crate::io::{ConnId, Dest, Transmit};

/// What came out of decoding one received ASAP (or, with `M = EnrpMessage`, ENRP) message.
pub(crate) enum Inbound<M = AsapMessage> {
    /// A message, plus the causes to report for skipped unknown parameters (action `11`).
    Message(M, Vec<Cause>),
    /// Undecodable: the cause to report, or `None` for a silent drop.
    Invalid(Option<Cause>),
}

/// One received message, decoded by the protocol the shell labelled it with
/// ([`crate::io::RecvMeta::protocol`]).
pub(crate) enum Received<'a> {
    Asap(Inbound<AsapMessage>),
    Enrp(Inbound<EnrpMessage>),
    /// Application data (session layer): the bytes as received, never decoded here.
    #[allow(dead_code)] // read by the session layer, which does not exist yet
    Data(&'a [u8]),
}

/// Decode and count one received message of `protocol`: ASAP with [`decode_asap_inbound`],
/// ENRP with [`decode_enrp_inbound`], application data passed through (counted).
pub(crate) fn decode_inbound<'a>(
    protocol: Protocol,
    bytes: &'a [u8],
    counters: &mut Counters,
) -> Received<'a> {
    match protocol {
        Protocol::Asap => Received::Asap(decode_asap_inbound(bytes, counters)),
        Protocol::Enrp => Received::Enrp(decode_enrp_inbound(bytes, counters)),
        Protocol::Data(_) => {
            counters.on_rx(protocol, 0);
            Received::Data(bytes)
        }
    }
}

/// Decode and count one received ASAP message.
///
/// An undecodable message gets the cause [`rserpool_wire::DecodeError::report_cause`]
/// gives, except a well-formed ENRP message (over TCP, ENRP sent to the ASAP port arrives
/// on the ASAP stream, and ENRP type codes overlap ASAP's, so it fails in odd places):
/// that is answered with Unrecognized Message (0x2) quoting it.
pub(crate) fn decode_asap_inbound(bytes: &[u8], counters: &mut Counters) -> Inbound {
    match decode_asap(bytes) {
        Ok(d) => {
            counters.on_rx(Protocol::Asap, d.message.type_code());
            let reports = d.report_causes();
            Inbound::Message(d.message, reports)
        }
        Err(e) => {
            counters.rx_invalid += 1;
            if decode_enrp(bytes).is_ok() {
                counters.wrong_protocol += 1;
                let n = bytes.len().min(MAX_REPORTED_INFO);
                let quote = bytes[..n].to_vec();
                return Inbound::Invalid(Some(Cause::with_info(
                    CauseCode::UNRECOGNIZED_MESSAGE,
                    quote,
                )));
            }
            Inbound::Invalid(e.report_cause(bytes))
        }
    }
}

/// Decode and count one received ENRP message (an undecodable one counts as `rx_invalid`
/// and comes back with the cause to report, if any).
pub(crate) fn decode_enrp_inbound(bytes: &[u8], counters: &mut Counters) -> Inbound<EnrpMessage> {
    match decode_enrp(bytes) {
        Ok(d) => {
            counters.on_rx(Protocol::Enrp, d.message.type_code());
            let reports = d.report_causes();
            Inbound::Message(d.message, reports)
        }
        Err(e) => {
            counters.rx_invalid += 1;
            Inbound::Invalid(e.report_cause(bytes))
        }
    }
}

/// A message an [`Outbox`] can send: its protocol, type code and encoding.
pub(crate) trait OutMessage {
    const PROTOCOL: Protocol;
    fn type_code(&self) -> u8;
    fn try_encode(&self) -> Result<Vec<u8>, EncodeError>;
}

impl OutMessage for AsapMessage {
    const PROTOCOL: Protocol = Protocol::Asap;
    fn type_code(&self) -> u8 {
        AsapMessage::type_code(self)
    }
    fn try_encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.try_encode_to_vec()
    }
}

impl OutMessage for EnrpMessage {
    const PROTOCOL: Protocol = Protocol::Enrp;
    fn type_code(&self) -> u8 {
        EnrpMessage::type_code(self)
    }
    fn try_encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.try_encode_to_vec()
    }
}

/// Outgoing messages (ASAP, ENRP or application data), drained by `poll_transmit`.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
}

impl Outbox {
    /// Queue `msg` (ASAP or ENRP, sent with its protocol); one that cannot be encoded is
    /// counted (`unencodable`) and not sent.
    pub(crate) fn send<M: OutMessage>(&mut self, counters: &mut Counters, dest: Dest, msg: &M) {
        if self.try_send(counters, dest, msg).is_err() {
            counters.unencodable += 1;
        }
    }
    /// Queue `msg` if it can be encoded (its quoted causes are cut to fit the 16-bit
    /// Message Length); otherwise nothing is queued and `dest` comes back with the error,
    /// for the caller to answer otherwise.
    pub(crate) fn try_send<M: OutMessage>(
        &mut self,
        counters: &mut Counters,
        dest: Dest,
        msg: &M,
    ) -> Result<(), (Dest, EncodeError)> {
        let bytes = match msg.try_encode() {
            Ok(b) => b,
            Err(e) => return Err((dest, e)),
        };
        counters.on_tx(M::PROTOCOL, msg.type_code());
        self.queue.push_back(Transmit {
            dest,
            protocol: M::PROTOCOL,
            bytes,
        });
        Ok(())
    }
    /// Queue a message encoded elsewhere (its type is its first byte).
    pub(crate) fn send_encoded(
        &mut self,
        counters: &mut Counters,
        dest: Dest,
        protocol: Protocol,
        bytes: Vec<u8>,
    ) {
        counters.on_tx(protocol, bytes.first().copied().unwrap_or(0));
        self.queue.push_back(Transmit {
            dest,
            protocol,
            bytes,
        });
    }
    /// Queue application data (a session message) with SCTP PPID `ppid`.
    pub(crate) fn send_data(
        &mut self,
        counters: &mut Counters,
        dest: Dest,
        ppid: u32,
        bytes: Vec<u8>,
    ) {
        let protocol = Protocol::Data(ppid);
        counters.on_tx(protocol, 0);
        self.queue.push_back(Transmit {
            dest,
            protocol,
            bytes,
        });
    }
    /// An ASAP_ERROR carrying `causes` (nothing is sent for an empty list).
    pub(crate) fn send_error(&mut self, counters: &mut Counters, dest: Dest, causes: Vec<Cause>) {
        if causes.is_empty() {
            return;
        }
        counters.errors_sent += 1;
        let msg = AsapMessage::Error {
            error: OperationError { causes },
        };
        self.send(counters, dest, &msg);
    }
    /// Decode one ASAP message received on `conn`, answering what must be answered: an
    /// undecodable message gets its ASAP_ERROR (or nothing, for a silent drop), skipped
    /// parameters with report bits get theirs. Returns the message to process, if any.
    pub(crate) fn accept(
        &mut self,
        counters: &mut Counters,
        conn: ConnId,
        bytes: &[u8],
    ) -> Option<AsapMessage> {
        match decode_asap_inbound(bytes, counters) {
            Inbound::Message(m, reports) => {
                self.send_error(counters, Dest::Conn(conn), reports);
                Some(m)
            }
            Inbound::Invalid(cause) => {
                self.send_error(counters, Dest::Conn(conn), cause.into_iter().collect());
                None
            }
        }
    }
    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }
}

/// A random non-zero 32-bit value (PE and server identifiers never use 0).
pub(crate) fn random_nonzero(rng: &mut impl RngCore) -> u32 {
    loop {
        let v = rng.next_u32();
        if v != 0 {
            return v;
        }
    }
}

/// Longest delay a core schedules (configuration values beyond it are clamped).
const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `now + d` without overflow panics for absurd configured durations.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(MAX_DELAY)).unwrap_or(now)
}
