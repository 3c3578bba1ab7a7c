//! Message counters every core keeps (for `rsp dump` and metrics).

use rserpool_wire::asap_type_name;

/// Number of slots in the per-type arrays: ASAP types 0x01…0x0e, slot 0 = unknown type.
pub const TYPE_SLOTS: usize = 16;

/// Messages in and out by ASAP type, plus errors and drops.
///
/// `rx[t]` / `tx[t]` count ASAP message type `t` (0x01…0x0e); slot 0 collects types that
/// could not be decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Decoded messages received, by type.
    pub rx: [u64; TYPE_SLOTS],
    /// Messages sent, by type.
    pub tx: [u64; TYPE_SLOTS],
    /// Messages that failed to decode (malformed, truncated, unknown type …).
    pub rx_invalid: u64,
    /// ASAP_ERROR messages sent because of something we received.
    pub errors_sent: u64,
    /// Messages received and ignored (wrong direction, unknown PE, stale response …).
    pub dropped: u64,
    /// Messages received with the wrong protocol (ENRP on an ASAP core, including ENRP
    /// messages on an ASAP stream) or as a datagram where only connections are allowed.
    pub wrong_protocol: u64,
    /// Messages not sent because they cannot be encoded (longer than 65,535 bytes even
    /// with the information of their error causes cut).
    pub unencodable: u64,
}

impl Counters {
    fn slot(ty: u8) -> usize {
        let t = usize::from(ty);
        if t < TYPE_SLOTS {
            t
        } else {
            0
        }
    }
    pub(crate) fn on_rx(&mut self, ty: u8) {
        self.rx[Self::slot(ty)] += 1;
    }
    pub(crate) fn on_tx(&mut self, ty: u8) {
        self.tx[Self::slot(ty)] += 1;
    }
    /// Received count for an ASAP message type code.
    pub fn received(&self, ty: u8) -> u64 {
        self.rx[Self::slot(ty)]
    }
    /// Sent count for an ASAP message type code.
    pub fn sent(&self, ty: u8) -> u64 {
        self.tx[Self::slot(ty)]
    }
    /// `(message name, received, sent)` for every type with a non-zero count.
    pub fn by_type(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        (0..TYPE_SLOTS).filter_map(move |i| {
            let (rx, tx) = (self.rx[i], self.tx[i]);
            if rx == 0 && tx == 0 {
                return None;
            }
            let name = u8::try_from(i)
                .ok()
                .and_then(asap_type_name)
                .unwrap_or("unknown");
            Some((name, rx, tx))
        })
    }
}
