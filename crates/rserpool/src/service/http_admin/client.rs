//! A small HTTP/1.1 client for the admin endpoint (what `rsp dump` and `rsp monitor`
//! read it with): one GET per connection, every wait bounded.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `GET path` from `addr`: the status and the whole body. `timeout` bounds the connect
/// and each wait for data, not the whole transfer.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let stalled = || anyhow::anyhow!("no answer from {addr} within {timeout:?}");
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| stalled())?
        .with_context(|| format!("cannot reach the HTTP endpoint at {addr}"))?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = tokio::time::timeout(
        timeout,
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| stalled())??;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::new())?;
    let resp = tokio::time::timeout(timeout, send.send_request(req))
        .await
        .map_err(|_| stalled())?
        .context("HTTP request")?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => {
                driver.abort();
                return Err(stalled());
            }
            Ok(None) => break,
            Ok(Some(f)) => {
                if let Ok(data) = f.context("reading the answer")?.into_data() {
                    out.extend_from_slice(&data);
                }
            }
        }
    }
    driver.abort();
    Ok((status, out))
}

/// `GET path` as JSON of type `T`; an answer other than 200 is an error naming the
/// endpoint's `error` member.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<T> {
    let (status, body) = get(addr, path, timeout).await?;
    if status != 200 {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        bail!("{addr} answered {status}: {msg}");
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        bail!("{addr} closed the connection without an answer");
    }
    serde_json::from_slice(&body).context("unexpected answer (cut short?)")
}

/// `s` percent-encoded for a path segment or query value (unreserved characters kept).
pub fn encode(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
