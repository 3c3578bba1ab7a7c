//! The error causes whose information is a parameter the codec encodes: cause 0x5
//! quotes a policy TLV. Built and shown here so the data types never import the codec.

use std::fmt;

use super::tlv::{decode_policy_tlv, encode_policy};
use super::writer::Writer;
use crate::types::*;

impl Cause {
    /// Cause 0x5 carrying the pool's policy TLV.
    pub fn inconsistent_policy(pool_policy: &Policy) -> Self {
        let mut info = Vec::new();
        encode_policy(&mut Writer::new(&mut info), pool_policy);
        Self::with_info(CauseCode::INCONSISTENT_POLICY, info)
    }
}

impl fmt::Display for Cause {
    /// The cause code in words, then what its information says, in words where the cause
    /// defines it: `inconsistent pooling policy (0x5): the pool's policy is rr`,
    /// `invalid values (0x3) in parameter Pool Handle (0x9)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if self.info.is_empty() {
            return Ok(());
        }
        let tlv_type = (self.info.len() >= 4)
            .then(|| ParamType(u16::from_be_bytes([self.info[0], self.info[1]])));
        match self.code {
            CauseCode::INCONSISTENT_POLICY => match decode_policy_tlv(&self.info) {
                Ok(p) => match p.policy_type().long_name() {
                    Some(long) => write!(f, ": the pool's policy is {} ({long})", p.policy_type()),
                    None => write!(f, ": the pool's policy is {}", p.policy_type()),
                },
                Err(_) => write!(f, " ({} bytes of information)", self.info.len()),
            },
            CauseCode::UNRECOGNIZED_PARAMETER => match tlv_type {
                Some(t) => write!(f, ": parameter type {:#06x}", t.0),
                None => write!(f, " ({} bytes of information)", self.info.len()),
            },
            CauseCode::UNRECOGNIZED_MESSAGE => match self.info.first() {
                Some(t) => write!(f, ": message type {t:#04x}"),
                None => Ok(()),
            },
            CauseCode::INVALID_VALUES | CauseCode::INCONSISTENT_TRANSPORT | CauseCode(0x11) => {
                match tlv_type {
                    Some(t) => write!(f, " in parameter {} ({:#06x})", t.name(), t.0),
                    None => write!(f, " ({} bytes of information)", self.info.len()),
                }
            }
            _ => write!(f, " ({} bytes of information)", self.info.len()),
        }
    }
}
