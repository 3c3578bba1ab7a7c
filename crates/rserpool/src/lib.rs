//! rserpool: the tokio shell over the sans-IO cores.

#[cfg(target_os = "linux")]
pub mod sctp;
