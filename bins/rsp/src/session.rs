//! The PU ↔ PE session of the demo services: moved to [`rserpool::service::session`]
//! (client side) and [`rserpool::service::demo`] (the services).

pub use rserpool::service::session::*;
