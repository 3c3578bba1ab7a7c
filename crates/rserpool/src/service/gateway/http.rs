//! HTTP mode of the gateway: HTTP/1.1 towards the client (hyper), and for each request a
//! PE by the pool's policy over kept-alive connections to the PEs.
//!
//! * The request body of an idempotent request (GET, HEAD, PUT, DELETE, OPTIONS, TRACE)
//!   or of one of at most [`SMALL_BODY`] bytes is read whole (at most `max_body`, else
//!   413) so the request can be sent again; any other body (larger, or of unknown length)
//!   streams to the PE. A request that cannot reach its PE (connect refused or timed out:
//!   the PE is reported unreachable; or a kept connection found closed before the request
//!   went out) goes to the next PE; one whose PE fails after it was sent is retried on
//!   another PE when its method is idempotent, else the client gets 502.
//! * Hop-by-hop headers are dropped both ways; `X-Forwarded-For` gets the client's address
//!   appended.
//! * No PE reachable: 503 and a log line.
//! * Connections to PEs are kept per PE address and reused while the PE keeps them open
//!   (at most [`IDLE_PER_PE`] idle ones each).
//! * Least-used policies: the pool user's cache carries each PE's load as the PE
//!   registered it (refreshed from the registrar every few seconds), so the per-request
//!   choice follows the load the PEs report (`rsp serve http --capacity`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use rserpool_wire::PoolHandle;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;

/// Idle kept-alive connections kept per PE.
pub const IDLE_PER_PE: usize = 256;

/// Request bodies of non-idempotent requests up to this size (by `Content-Length`) are
/// buffered too, so they can go to another PE after a failure; larger ones stream.
pub const SMALL_BODY: u64 = 64 * 1024;

type Body = BoxBody<Bytes, hyper::Error>;
type Sender = SendRequest<Body>;

/// Kept-alive connections to PEs, by PE address.
#[derive(Default)]
pub(crate) struct Upstreams {
    idle: Mutex<HashMap<SocketAddr, Vec<Sender>>>,
}

impl Upstreams {
    /// A connection to `addr` ready for a request, if one is kept.
    fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        // The most recently kept first (the likeliest to be ready and warm); closed ones go.
        while let Some(i) = list.iter().rposition(|s| s.is_ready() || s.is_closed()) {
            let s = list.swap_remove(i);
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keep `s` for the next request (it becomes ready once this response is read).
    fn checkin(&self, addr: SocketAddr, s: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(addr).or_default();
            if list.len() < IDLE_PER_PE {
                list.push(s);
            }
        }
    }

    /// Forget every connection to `addr` (its PE failed).
    fn forget(&self, addr: SocketAddr) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.remove(&addr);
        }
    }
}

pub(super) async fn session(
    sh: &Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    pool: &PoolHandle,
    mut stop: watch::Receiver<bool>,
) {
    let sh2 = sh.clone();
    let pool = pool.clone();
    // The client's address as a header value, made once per connection.
    let ip = HeaderValue::from_str(&peer.ip().to_string()).ok();
    let svc = hyper::service::service_fn(move |req| {
        let sh = sh2.clone();
        let pool = pool.clone();
        let ip = ip.clone();
        async move { Ok::<_, Infallible>(forward(&sh, &pool, peer, ip, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    if !sh.cfg.idle_timeout.is_zero() {
        builder.header_read_timeout(sh.cfg.idle_timeout);
    }
    let conn = builder.serve_connection(TokioIo::new(client), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "gateway: HTTP connection ended: {e}");
            }
        }
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Headers of one hop only (RFC 9110 §7.6.1), plus those the `Connection` header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

fn simple(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|n: Infallible| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A request body as the attempts see it.
enum OutBody {
    /// Read whole: every attempt sends a copy.
    Buffered(Bytes),
    /// Streamed from the client: one attempt only, unless it comes back unsent.
    Stream(Option<Body>),
}

/// The request as sent to a PE (rebuilt for each attempt).
struct Outgoing {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: OutBody,
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|n: Infallible| match n {}).boxed()
}

impl Outgoing {
    /// The request for the next attempt (`None`: its streamed body is gone).
    fn request(&mut self) -> Option<Request<Body>> {
        let body = match &mut self.body {
            OutBody::Buffered(b) => full(b.clone()),
            OutBody::Stream(s) => s.take()?,
        };
        let mut r = Request::new(body);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = self.headers.clone();
        Some(r)
    }

    /// A request that was never sent gives its streamed body back.
    fn unsent(&mut self, r: Request<Body>) {
        if let OutBody::Stream(s) = &mut self.body {
            *s = Some(r.into_body());
        }
    }
}

async fn forward(
    sh: &Shared,
    pool: &PoolHandle,
    peer: SocketAddr,
    ip: Option<HeaderValue>,
    req: Request<Incoming>,
) -> Response<Body> {
    sh.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let length = hyper::body::Body::size_hint(&body).exact();
    if length.is_some_and(|n| n > sh.cfg.max_body as u64) {
        return simple(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let body = if hyper::body::Body::is_end_stream(&body) {
        OutBody::Buffered(Bytes::new())
    } else if idempotent(&parts.method) || length.is_some_and(|n| n <= SMALL_BODY) {
        // Buffered so that the request can go to another PE after a failure.
        match Limited::new(body, sh.cfg.max_body).collect().await {
            Ok(c) => OutBody::Buffered(c.to_bytes()),
            Err(e) => {
                return if e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    simple(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                } else {
                    simple(StatusCode::BAD_REQUEST, "cannot read the request body")
                };
            }
        }
    } else {
        // Large or of unknown length, not idempotent: streamed, never held whole.
        OutBody::Stream(Some(body.boxed()))
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", peer.ip())).ok(),
        None => ip,
    };
    if let Some(v) = xff {
        headers.insert("x-forwarded-for", v);
    }
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    if !headers.contains_key(header::HOST) {
        if let Some(a) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, a);
        }
    }
    let mut out = Outgoing {
        method: parts.method,
        uri,
        headers,
        body,
    };
    let retry_sent = idempotent(&out.method);
    // Attempts that count against max_attempts; a failure on a kept-alive connection
    // does not count (the connection may have been stale), but every try counts towards
    // a hard bound.
    let mut attempt = 0;
    let mut tries = 0;
    loop {
        tries += 1;
        let counted = if tries > 3 * sh.cfg.max_attempts.max(1) {
            sh.cfg.max_attempts.max(1)
        } else {
            attempt
        };
        let (pe, addr) = match sh.pick(pool, counted).await {
            Ok(x) => x,
            Err(e) => {
                sh.stats.no_pe.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "gateway: {e}; answering 503");
                return simple(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            }
        };
        attempt += 1;
        if attempt > 1 {
            sh.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
        let kept = sh.upstream.checkout(addr);
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(s) => s,
            None => match handshake(sh, addr).await {
                Ok(s) => s,
                Err(e) => {
                    sh.upstream.forget(addr);
                    sh.failed(pool, pe, addr, &e);
                    continue;
                }
            },
        };
        let Some(request) = out.request() else {
            return simple(StatusCode::BAD_GATEWAY, "the pool element failed");
        };
        match sender.try_send_request(request).await {
            Ok(resp) => {
                sh.upstream.checkin(addr, sender);
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Response::from_parts(parts, body.boxed());
            }
            Err(mut e) => {
                let unsent = match e.take_message() {
                    Some(r) => {
                        out.unsent(r);
                        true
                    }
                    None => false,
                };
                // The PE may be gone: its other kept connections are suspect too (the next
                // pick of it connects afresh, and a refusal reports it).
                sh.upstream.forget(addr);
                tracing::info!(%peer, %pe, %addr, unsent, "gateway: request to PE failed: {}", e.error());
                if !(unsent || retry_sent) {
                    return simple(StatusCode::BAD_GATEWAY, "the pool element failed");
                }
                if reused {
                    attempt -= 1;
                }
            }
        }
    }
}

async fn handshake(sh: &Shared, addr: SocketAddr) -> std::io::Result<Sender> {
    let s = sh.connect(addr).await?;
    let _ = s.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, "gateway: PE connection ended: {e}");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::HOST));
    }

    #[test]
    fn idempotent_methods() {
        assert!(idempotent(&Method::GET));
        assert!(idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST));
        assert!(!idempotent(&Method::PATCH));
    }
}
