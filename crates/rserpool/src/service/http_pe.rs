//! The HTTP pool element of `rsp serve http`: answers every request with one fixed body
//! (a file's contents or N bytes of filler) and names itself in an `X-Rsp-Pe` header (its
//! PE identifier), so a test or a benchmark behind the gateway sees which PE answered.
//! HTTP/1.1 with keep-alive (hyper); request bodies are read and thrown away.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::demo::LoadTracker;
use crate::transport::accept::accept_until;

/// The header naming the PE that answered.
pub const PE_HEADER: &str = "x-rsp-pe";

/// `n` bytes of printable filler ending in a newline.
pub fn filler(n: usize) -> Bytes {
    let mut v: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    if let Some(last) = v.last_mut() {
        *last = b'\n';
    }
    Bytes::from(v)
}

/// What one HTTP PE answers.
#[derive(Debug, Clone)]
pub struct HttpBody {
    pub body: Bytes,
    pub content_type: &'static str,
    /// The PE identifier to name in [`PE_HEADER`] (e.g. `0x1a2b3c4d`).
    pub pe: String,
}

/// Serve HTTP on `listener` until the process ends; each connection is a session for
/// `load` (least-used policies).
pub async fn serve_http(mut listener: TcpListener, what: HttpBody, load: Option<LoadTracker>) {
    let load = load.map(Arc::new);
    let what = Arc::new(what);
    accept_until(
        &mut listener,
        "http",
        std::future::pending(),
        |(stream, peer): (tokio::net::TcpStream, SocketAddr)| {
            let _ = stream.set_nodelay(true);
            let what = what.clone();
            let load = load.clone();
            tokio::spawn(async move {
                if let Some(l) = &load {
                    l.changed(1);
                }
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let what = what.clone();
                    async move {
                        // Read the body piece by piece (thrown away: a huge upload costs
                        // no memory) so the connection stays usable.
                        let mut body = req.into_body();
                        while let Some(Ok(_)) = body.frame().await {}
                        let mut r = Response::new(Full::new(what.body.clone()));
                        let h = r.headers_mut();
                        h.insert(CONTENT_TYPE, HeaderValue::from_static(what.content_type));
                        if let Ok(v) = HeaderValue::from_str(&what.pe) {
                            h.insert(PE_HEADER, v);
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let r = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                if let Err(e) = r {
                    tracing::debug!(%peer, "http: connection ended: {e}");
                }
                if let Some(l) = &load {
                    l.changed(-1);
                }
            });
            std::future::ready(ControlFlow::Continue(()))
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_size_asked() {
        assert_eq!(filler(0).len(), 0);
        let f = filler(1024);
        assert_eq!(f.len(), 1024);
        assert_eq!(f[1023], b'\n');
        assert_eq!(&f[..3], b"abc");
    }
}
