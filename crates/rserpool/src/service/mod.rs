//! Services built on the driver and the transports, ready to run in any process.
//!
//! * [`registrar`]: the registrar service — listeners, the core on its driver, start/stop,
//!   applying a new configuration at run time.
//! * [`admin`]: its handlespace dump (paged JSON) and the documents.
//! * [`http_admin`]: the HTTP endpoint of the registrar, PEs and the gateway (JSON API,
//!   Prometheus metrics, health, event stream, dashboard) and its client.
//! * [`oplog`]: its event log (per-PE debug lines, rate-limited notices, summaries).
//! * [`demo`]: the demo services (echo, discard, daytime, chargen) over TCP and SCTP, and
//!   the load tracker that reports open sessions as PE load.
//! * [`session`]: the session layer's async API ([`session::Session`] for a PU,
//!   [`session::SessionListener`] / [`session::PeSession`] for a PE) over the sans-IO
//!   cores, and the plain client connection of the demo services.
//! * [`files`]: the file service of the session layer (`rsp serve files`, `rsp fetch`).
//! * [`calcapp`]: RSPLIB's CalcApp over the session layer (`rsp serve calcapp`,
//!   `rsp calcapp`).
//! * [`relay`]: a PE that serves each session through a session to another pool.
//! * [`pingpong`]: RSPLIB's Ping Pong over the session layer (`rsp serve pingpong`,
//!   `rsp pingpong`).
//! * [`bench`](mod@bench): the ASAP message client and echo baselines of the load generator.
//! * [`enrp_dump`]: a one-shot ENRP client reading a registrar's handlespace with Handle
//!   Table Requests (`rsp dump --enrp`).
//! * [`call`]: the pool user of `rsp call` on the session layer (lines out, replies back,
//!   unanswered lines resent after a failover).
//!
//! Settings files, flags, printing and exit codes belong to the caller (`rsp`).

use std::time::Duration;

pub mod admin;
pub mod bench;
pub mod calcapp;
pub mod call;
pub mod csp;
pub mod demo;
pub mod dns;
pub mod enrp_dump;
pub mod files;
pub mod gateway;
pub mod http_admin;
pub mod http_pe;
pub mod oplog;
pub mod pingpong;
pub mod registrar;
pub mod relay;
pub mod session;

/// A duration as settings take it: `500ms`, `3s`, `2m`, `1h`, `0.25ms`.
pub fn human_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d.subsec_nanos() == 0 {
        let s = d.as_secs();
        return if s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        };
    }
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}ms", d.as_millis());
    }
    format!("{}ms", d.as_secs_f64() * 1000.0)
}
