//! rserpool-wire: the ASAP (RFC 5352) and ENRP (RFC 5353) wire codec.
//!
//! * [`types`]: pool handles, identifiers, transports, pool elements, error causes.
//! * [`policy`]: member selection policy types and the 18 policies with their values.
//! * [`message`]: the 14 ASAP and 10 ENRP messages.
//! * [`codec`]: `encode_*` / `decode_*`; decoding yields a typed message or a
//!   [`DecodeError`] naming the problem and its byte offset, never a panic.
//! * [`checksum`]: the RFC 5353 PE checksum, incremental.
//! * [`framing`]: stream deframing of back-to-back messages and the PU↔PE session channel.
//! * `render` (cargo feature `render`, used by `rsp decode`): human-readable trees of
//!   decoded messages and decode errors, on the codec's reader, TLV walk and flag table.
//!
//! No I/O, no clock, no randomness.

pub mod checksum;
pub mod codec;
pub mod csp;
pub mod error;
pub mod framing;
pub mod message;
mod pad;
pub mod policy;
#[cfg(any(test, feature = "render"))]
pub mod render;
pub mod types;

pub use checksum::PeChecksum;
pub use codec::{
    decode, decode_asap, decode_enrp, encode, encode_asap, encode_enrp, try_encode,
    try_encode_asap, try_encode_enrp, Decoded,
};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use message::*;
pub use types::*;
