//! The one accept loop of the crate: every listener (the driver's ASAP listeners, the
//! registrar's admin listener, the demo services over TCP and SCTP) runs through
//! [`accept_until`].
//!
//! * Errors: transient ones (the peer gave up before the accept: aborted, reset, refused,
//!   interrupted) are skipped; any other (out of file descriptors, buffers) backs off
//!   1 ms, doubling to 1 s, instead of spinning.
//! * Stop: the loop ends as soon as `stop` resolves (also during a back-off pause); the
//!   caller drains what it started (the driver closes its connections, the services'
//!   sessions end with the process).
//! * Limits: `on_conn` decides per connection (the driver admits it against its
//!   connection limit or closes it) and may end the loop ([`ControlFlow::Break`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use tracing::{debug, warn};

use super::MessageListener;

/// Something that accepts connections.
pub trait Acceptor: Send {
    /// What one accept yields.
    type Conn: Send;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Acceptor for tokio::net::TcpListener {
    type Conn = (tokio::net::TcpStream, SocketAddr);
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send {
        tokio::net::TcpListener::accept(self)
    }
}

#[cfg(target_os = "linux")]
impl Acceptor for crate::sctp::SctpListener {
    type Conn = (crate::sctp::SctpStream, SocketAddr);
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send {
        crate::sctp::SctpListener::accept(self)
    }
}

/// A [`MessageListener`] as an [`Acceptor`] of message streams.
#[derive(Debug)]
pub struct Messages<L>(pub L);

impl<L: MessageListener> Acceptor for Messages<L> {
    type Conn = L::Stream;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send {
        self.0.accept()
    }
}

/// First pause after an accept error, and the longest.
const BACKOFF_START: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accept on `listener` until `stop` resolves or `on_conn` breaks; `label` names the
/// listener in logs.
pub async fn accept_until<A, S, F, Fut>(listener: &mut A, label: &str, stop: S, mut on_conn: F)
where
    A: Acceptor,
    S: Future<Output = ()>,
    F: FnMut(A::Conn) -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    tokio::pin!(stop);
    let mut backoff = BACKOFF_START;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut stop => break,
        };
        match accepted {
            Ok(conn) => {
                backoff = BACKOFF_START;
                if on_conn(conn).await.is_break() {
                    break;
                }
            }
            Err(e) if is_transient_accept_error(&e) => {
                debug!(listener = %label, "accept: {e}");
            }
            Err(e) => {
                warn!(listener = %label, "accept failed: {e}; retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut stop => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    debug!(listener = %label, "listener stopped");
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}
