//! rserpool: the tokio shell over the sans-IO cores.
