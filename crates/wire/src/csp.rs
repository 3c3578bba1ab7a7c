//! RSPLIB's Component Status Protocol (CSP): the status report every component sends by
//! UDP to a monitor (RSPLIB's `cspmonitor`, default port 2960). Not part of RFC 5351–5356;
//! the layout is RSPLIB's (`componentstatuspackets.h`, and Wireshark's CSP dissector):
//!
//! ```text
//!  0 Type (0x01 report) | 1 Flags (bit 0 FINAL) | 2 Length (u16)
//!  4 Version (u32, 0x0200)
//!  8 SenderID (u64: group in the top byte, object below)
//! 16 SenderTimeStamp (u64, µs since the component's first report)
//! 24 ReportInterval (u32, µs)
//! 28 Location (128 bytes of text, NUL-padded)
//! 156 Status (128 bytes of text, NUL-padded)
//! 284 Workload (u16: round(load × 0xfffe); 0xffff unknown)
//! 286 Associations (u16), then 24 bytes each:
//!     ReceiverID u64, Duration u64 (µs; all ones unknown), Flags u16, ProtocolID u16
//!     (IP protocol number), PPID u32
//! ```
//!
//! All fields are big-endian. RSPLIB's reporter stores `htonl(length)` into the 16-bit
//! Length field (0 on a little-endian host) and its monitor ignores the field; we write the
//! true length and accept either when decoding. The monitor takes a report only when its
//! size is exactly 288 + 24 × Associations bytes.

use thiserror::Error;

/// Report message type.
pub const CSP_REPORT: u8 = 0x01;
/// The version RSPLIB speaks.
pub const CSP_VERSION: u32 = 0x0200;
/// FINAL flag: the component stops.
pub const CSP_FLAG_FINAL: u8 = 0x01;
/// Size of the Location and Status text fields.
pub const CSP_TEXT_LEN: usize = 128;
/// A report without associations.
pub const CSP_REPORT_LEN: usize = 288;
/// One association entry.
pub const CSP_ASSOCIATION_LEN: usize = 24;
/// The monitor's default UDP port.
pub const CSP_DEFAULT_PORT: u16 = 2960;

/// Component groups (top byte of a component identifier).
pub const CSP_GROUP_REGISTRAR: u8 = 1;
pub const CSP_GROUP_POOL_ELEMENT: u8 = 2;
pub const CSP_GROUP_POOL_USER: u8 = 3;

/// A component identifier: `group` in bits 56–63, `object` (56 bits) below.
pub fn component_id(group: u8, object: u64) -> u64 {
    (u64::from(group) << 56) | (object & 0x00ff_ffff_ffff_ffff)
}

/// The group of a component identifier.
pub fn component_group(id: u64) -> u8 {
    (id >> 56) as u8
}

/// One association a component reports (a peer registrar, its home registrar, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CspAssociation {
    /// Component identifier of the other side (0 when unknown).
    pub receiver: u64,
    /// How long it has been up, µs (`None`: unknown, sent as all ones).
    pub duration_us: Option<u64>,
    pub flags: u16,
    /// IP protocol number (6 TCP, 132 SCTP, 17 UDP).
    pub protocol: u16,
    pub ppid: u32,
}

/// A status report.
#[derive(Clone, Debug, PartialEq)]
pub struct CspReport {
    pub final_report: bool,
    pub sender: u64,
    /// µs since the component's first report.
    pub timestamp_us: u64,
    /// The reporter's interval, µs.
    pub interval_us: u32,
    /// Where the component runs (host and addresses); cut to 127 bytes.
    pub location: String,
    /// One line of status text; cut to 127 bytes.
    pub status: String,
    /// Load in 0..=1; `None` unknown.
    pub workload: Option<f64>,
    pub associations: Vec<CspAssociation>,
}

/// A datagram that is not a CSP report we understand.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CspError {
    #[error("CSP report truncated: {len} bytes, at least {CSP_REPORT_LEN} needed")]
    Truncated { len: usize },
    #[error("CSP message type {0:#04x} is not a report")]
    NotAReport(u8),
    #[error("CSP version {0:#06x} is not 0x0200")]
    Version(u32),
    #[error("CSP report of {len} bytes does not hold its {associations} associations exactly")]
    Size { len: usize, associations: usize },
    #[error("CSP length field {field} differs from the {len} bytes received")]
    Length { field: u16, len: usize },
    #[error("CSP report has {0} associations, more than fit in a datagram")]
    TooManyAssociations(usize),
}

/// The most associations one report carries (the datagram stays below 64 KiB).
pub const CSP_MAX_ASSOCIATIONS: usize = (65_507 - CSP_REPORT_LEN) / CSP_ASSOCIATION_LEN;

/// Text cut to at most `CSP_TEXT_LEN - 1` bytes on a character boundary, NUL-padded.
fn put_text(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(CSP_TEXT_LEN - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&text.as_bytes()[..end]);
    out.resize(out.len() + CSP_TEXT_LEN - end, 0);
}

fn get_text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl CspReport {
    /// The report's bytes (at most [`CSP_MAX_ASSOCIATIONS`] associations are sent).
    pub fn encode(&self) -> Vec<u8> {
        let assocs = &self.associations[..self.associations.len().min(CSP_MAX_ASSOCIATIONS)];
        let len = CSP_REPORT_LEN + assocs.len() * CSP_ASSOCIATION_LEN;
        let mut out = Vec::with_capacity(len);
        out.push(CSP_REPORT);
        out.push(if self.final_report { CSP_FLAG_FINAL } else { 0 });
        out.extend_from_slice(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        out.extend_from_slice(&CSP_VERSION.to_be_bytes());
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.interval_us.to_be_bytes());
        put_text(&mut out, &self.location);
        put_text(&mut out, &self.status);
        let w = match self.workload {
            Some(w) if w.is_finite() && w >= 0.0 => (w.min(1.0) * 65_534.0).round() as u16,
            _ => 0xffff,
        };
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&(assocs.len() as u16).to_be_bytes());
        for a in assocs {
            out.extend_from_slice(&a.receiver.to_be_bytes());
            out.extend_from_slice(&a.duration_us.unwrap_or(u64::MAX).to_be_bytes());
            out.extend_from_slice(&a.flags.to_be_bytes());
            out.extend_from_slice(&a.protocol.to_be_bytes());
            out.extend_from_slice(&a.ppid.to_be_bytes());
        }
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Parse a report as the monitor does (exact size), also checking the Length field
    /// unless it is 0 (RSPLIB's reporter writes 0 there on little-endian hosts).
    pub fn decode(b: &[u8]) -> Result<Self, CspError> {
        if b.len() < CSP_REPORT_LEN {
            return Err(CspError::Truncated { len: b.len() });
        }
        let u16_at = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        if b[0] != CSP_REPORT {
            return Err(CspError::NotAReport(b[0]));
        }
        let version = u32_at(4);
        if version != CSP_VERSION {
            return Err(CspError::Version(version));
        }
        let n = usize::from(u16_at(286));
        if b.len() != CSP_REPORT_LEN + n * CSP_ASSOCIATION_LEN {
            return Err(CspError::Size {
                len: b.len(),
                associations: n,
            });
        }
        let field = u16_at(2);
        if field != 0 && usize::from(field) != b.len() {
            return Err(CspError::Length {
                field,
                len: b.len(),
            });
        }
        let w = u16_at(284);
        let associations = (0..n)
            .map(|i| {
                let o = CSP_REPORT_LEN + i * CSP_ASSOCIATION_LEN;
                let d = u64_at(o + 8);
                CspAssociation {
                    receiver: u64_at(o),
                    duration_us: (d != u64::MAX).then_some(d),
                    flags: u16_at(o + 16),
                    protocol: u16_at(o + 18),
                    ppid: u32_at(o + 20),
                }
            })
            .collect();
        Ok(CspReport {
            final_report: b[1] & CSP_FLAG_FINAL != 0,
            sender: u64_at(8),
            timestamp_us: u64_at(16),
            interval_us: u32_at(24),
            location: get_text(&b[28..28 + CSP_TEXT_LEN]),
            status: get_text(&b[156..156 + CSP_TEXT_LEN]),
            workload: (w != 0xffff).then(|| f64::from(w) / 65_534.0),
            associations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> CspReport {
        CspReport {
            final_report: false,
            sender: component_id(CSP_GROUP_REGISTRAR, 0x1234_5678),
            timestamp_us: 5_000_000,
            interval_us: 1_000_000,
            location: "host: 10.0.0.1".into(),
            status: "3[1] PEs in 1 Pools, 2 Peers".into(),
            workload: Some(0.5),
            associations: vec![CspAssociation {
                receiver: component_id(CSP_GROUP_REGISTRAR, 0x9abc),
                duration_us: None,
                flags: 0,
                protocol: 6,
                ppid: 12,
            }],
        }
    }

    #[test]
    fn a_report_round_trips_with_the_layout_rsplib_expects() {
        let r = report();
        let b = r.encode();
        assert_eq!(b.len(), CSP_REPORT_LEN + CSP_ASSOCIATION_LEN);
        assert_eq!(&b[0..4], &[1, 0, 0x01, 0x38]);
        assert_eq!(&b[4..8], &[0, 0, 2, 0]);
        assert_eq!(b[8], CSP_GROUP_REGISTRAR);
        assert_eq!(&b[28..32], b"host");
        assert_eq!(&b[156..159], b"3[1");
        assert_eq!(u16::from_be_bytes([b[284], b[285]]), 32_767);
        let back = CspReport::decode(&b).unwrap();
        assert_eq!(back.status, r.status);
        assert_eq!(back.associations, r.associations);
        assert!((back.workload.unwrap() - 0.5).abs() < 1e-4);
        // RSPLIB's Length of 0 is accepted.
        let mut z = b.clone();
        z[2] = 0;
        z[3] = 0;
        assert!(CspReport::decode(&z).is_ok());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_bad_reports_are_refused() {
        let mut r = report();
        r.status = "é".repeat(100);
        let b = r.encode();
        let back = CspReport::decode(&b).unwrap();
        assert_eq!(back.status.len(), 126);
        assert_eq!(
            CspReport::decode(&b[..100]),
            Err(CspError::Truncated { len: 100 })
        );
        let mut t = b.clone();
        t[0] = 2;
        assert_eq!(CspReport::decode(&t), Err(CspError::NotAReport(2)));
        let mut v = b.clone();
        v[7] = 1;
        assert!(matches!(CspReport::decode(&v), Err(CspError::Version(_))));
        assert!(matches!(
            CspReport::decode(&b[..b.len() - 1]),
            Err(CspError::Size { .. })
        ));
        let mut l = b.clone();
        l[3] ^= 1;
        assert!(matches!(
            CspReport::decode(&l),
            Err(CspError::Length { .. })
        ));
    }
}
