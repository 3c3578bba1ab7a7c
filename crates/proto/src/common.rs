//! Helpers shared by the cores: decoding with error reports, the transmit queue, IDs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::RngCore;
use rserpool_wire::{
    decode_asap, decode_enrp, AsapMessage, Cause, CauseCode, EncodeError, OperationError, Protocol,
    MAX_REPORTED_INFO,
};

use crate::counters::Counters;
use crate::io::{ConnId, Dest, Transmit};

/// What came out of decoding one received ASAP message.
pub(crate) enum Inbound {
    /// A message, plus the causes to report for skipped unknown parameters (action `11`).
    Message(AsapMessage, Vec<Cause>),
    /// Undecodable: the cause to report, or `None` for a silent drop.
    Invalid(Option<Cause>),
}

/// Decode and count one received ASAP message.
///
/// An undecodable message gets the cause [`rserpool_wire::DecodeError::report_cause`]
/// gives, except a well-formed ENRP message (over TCP, ENRP sent to the ASAP port arrives
/// on the ASAP stream, and ENRP type codes overlap ASAP's, so it fails in odd places):
/// that is answered with Unrecognized Message (0x2) quoting it.
pub(crate) fn decode_inbound(bytes: &[u8], counters: &mut Counters) -> Inbound {
    match decode_asap(bytes) {
        Ok(d) => {
            counters.on_rx(d.message.type_code());
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

/// Outgoing messages, drained by `poll_transmit`.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
}

impl Outbox {
    /// Queue `msg`; one that cannot be encoded is counted (`unencodable`) and not sent.
    pub(crate) fn send(&mut self, counters: &mut Counters, dest: Dest, msg: &AsapMessage) {
        if self.try_send(counters, dest, msg).is_err() {
            counters.unencodable += 1;
        }
    }
    /// Queue `msg` if it can be encoded (its quoted causes are cut to fit the 16-bit
    /// Message Length); otherwise nothing is queued and `dest` comes back with the error,
    /// for the caller to answer otherwise.
    pub(crate) fn try_send(
        &mut self,
        counters: &mut Counters,
        dest: Dest,
        msg: &AsapMessage,
    ) -> Result<(), (Dest, EncodeError)> {
        let bytes = match msg.try_encode_to_vec() {
            Ok(b) => b,
            Err(e) => return Err((dest, e)),
        };
        counters.on_tx(msg.type_code());
        self.queue.push_back(Transmit {
            dest,
            protocol: Protocol::Asap,
            bytes,
        });
        Ok(())
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
    /// Decode one message received on `conn`, answering what must be answered: an
    /// undecodable message gets its ASAP_ERROR (or nothing, for a silent drop), skipped
    /// parameters with report bits get theirs. Returns the message to process, if any.
    pub(crate) fn accept(
        &mut self,
        counters: &mut Counters,
        conn: ConnId,
        bytes: &[u8],
    ) -> Option<AsapMessage> {
        match decode_inbound(bytes, counters) {
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
