//! SIGINT / SIGTERM as a future, for [`Driver::run`](crate::Driver::run); SIGHUP as reload requests ([`Hangup`]).

/// Completes on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP as a stream of reload requests. Creating it replaces the default action of
/// SIGHUP (terminate the process) for the rest of the process's life; create it before
/// anything is worth losing. Elsewhere than Unix it never fires.
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    inner: tokio::signal::unix::Signal,
}

impl Hangup {
    /// Start catching SIGHUP (inside a tokio runtime).
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                inner: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Completes at the next SIGHUP (several in a row may count once).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.inner.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<()>().await;
        }
    }
}
