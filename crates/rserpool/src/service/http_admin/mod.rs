//! The HTTP admin endpoint of the long-running components (`rsp registrar --http`,
//! `rsp serve … --http`, `rsp gateway --http`): JSON documents under `/v1/`, Prometheus
//! metrics at `/metrics`, `/healthz` and `/readyz`, the handlespace changes as
//! server-sent events at `/v1/events`, and a dashboard at `/` (HTML, JS and CSS compiled
//! into the binary). `docs/http-api.md` documents every route with examples.
//!
//! * [`Component`]: what every component answers (status, metrics, readiness);
//!   [`router`] turns one into the common routes. The registrar adds its handlespace
//!   routes ([`registrar`]); a PE ([`pe`]) and the gateway ([`gateway`]) only the
//!   common ones.
//! * [`spawn`]: the server runs on a thread of its own with a single-threaded runtime at a
//!   lower CPU priority, so a flood of HTTP requests competes with the component's own
//!   traffic only through the kernel's scheduler. It reads request headers for at most
//!   [`HEADER_TIMEOUT`], takes at most [`MAX_HEADER_BYTES`] of them (else 431) and holds
//!   at most [`MAX_CONNECTIONS`] connections (more are closed at once).
//! * The registrar's port also answers the older line-JSON dump protocol
//!   ([`super::admin`]): a connection whose first byte is `{` or `d` (no HTTP method
//!   starts with either) goes there.
//! * [`client`]: the small HTTP client `rsp dump` and `rsp monitor` read it with.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

pub mod client;
pub mod events;
pub mod gateway;
pub mod metrics;
pub mod pe;
pub mod registrar;

pub use metrics::{Kind, Prom};

/// Longest wait for a request's headers (and for the first byte of a connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read (a larger one gets 431).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections served at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 16_384;
/// Event streams (`/v1/events`) open at once; one more gets 503.
pub const MAX_EVENT_STREAMS: usize = 256;

/// What every component's endpoint answers.
#[async_trait::async_trait]
pub trait Component: Send + Sync + 'static {
    /// `registrar`, `pool-element` or `gateway`.
    fn kind(&self) -> &'static str;
    /// The `/v1/status` document.
    async fn status(&self) -> serde_json::Value;
    /// Append this component's families to `/metrics`.
    async fn metrics(&self, m: &mut Prom);
    /// `/readyz`: `Err(why)` while not ready.
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

fn asset(body: &'static str, ty: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A JSON answer.
pub fn json(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error document `{"error": msg}`.
pub fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    json(status, &serde_json::json!({ "error": msg.to_string() }))
}

/// The routes every component has: `/`, its assets, `/healthz`, `/readyz`,
/// `/v1/status`, `/metrics`; unknown paths get a JSON 404.
pub fn router(c: Arc<dyn Component>) -> Router {
    let status = c.clone();
    let ready = c.clone();
    let metrics = c;
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                match ready.ready().await {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .route(
            "/v1/status",
            get(move || async move {
                let mut v = status.status().await;
                v["component"] = status.kind().into();
                json(StatusCode::OK, &v)
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                let mut m = Prom::new();
                metrics.metrics(&mut m).await;
                ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], m.finish())
            }),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path") })
}

/// A connection with a line-JSON client (the registrar's older dump protocol).
pub type Legacy =
    Arc<dyn Fn(TcpStream) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// Serve `app` on `listener` from a thread of its own (see the module docs) until `stop`
/// resolves. `legacy` takes the connections that start with `{` or `d`.
pub fn spawn<S>(
    listener: std::net::TcpListener,
    app: Router,
    legacy: Option<Legacy>,
    stop: S,
) -> std::io::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("rsp-http".into())
        .spawn(move || {
            // Where CPUs are scarce, the component's own traffic goes first.
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10)
            {
                tracing::debug!("HTTP thread priority: {e}");
            }
            rt.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, app, legacy, stop).await,
                    Err(e) => tracing::warn!("HTTP listener: {e}"),
                }
            });
        })?;
    Ok(())
}

/// Bind a listener for [`spawn`] (SO_REUSEADDR: a restarted component gets its port back
/// although its closed connections linger in TIME_WAIT).
pub fn bind(a: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(a),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&a.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The accept loop: per connection, the first byte decides (legacy or HTTP), then hyper
/// serves it with the header limits.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    legacy: Option<Legacy>,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    crate::transport::accept::accept_until(&mut listener, "http", stop, |(stream, peer)| {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP: {MAX_CONNECTIONS} connections open; closing");
            return std::future::ready(std::ops::ControlFlow::Continue(()));
        };
        let app = app.clone();
        let legacy = legacy.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(1)) => {}
                _ => return,
            }
            if let (Some(l), b'{' | b'd') = (&legacy, first[0]) {
                l(stream).await;
                return;
            }
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            if let Err(e) = b.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, "HTTP connection: {e}");
            }
        });
        std::future::ready(std::ops::ControlFlow::Continue(()))
    })
    .await;
}

/// Bind `addr` and serve `component`'s common routes there for the rest of the process
/// (a PE's or the gateway's endpoint); returns the address bound (real port).
pub fn start(
    addr: std::net::SocketAddr,
    component: Arc<dyn Component>,
) -> std::io::Result<std::net::SocketAddr> {
    let l = bind(addr)?;
    let local = l.local_addr()?;
    spawn(l, router(component), None, std::future::pending())?;
    Ok(local)
}
