//! RSPLIB's Ping Pong protocol over the session layer: `rsp serve pingpong` (the PE) and
//! `rsp pingpong` (the PU).
//!
//! PPID 33; every message starts with Type u8 (1 Ping, 2 Pong), Flags u8 (0), Length u16
//! (the whole message); integers big-endian. Ping: MessageNo u64, data. Pong: MessageNo
//! u64 (the Ping's), ReplyNo u64 (the PE's reply counter of the session), the Ping's data.
//! With each Pong (just before it) the PE sends a cookie, `<PP-TD1>` and the next ReplyNo
//! u64; a PE that gets a cookie echo continues the counter from it, so across a failover
//! the client sees ReplyNo advance by exactly one. A message that is not a Ping is ignored (and
//! acknowledged); a cookie echo that is not 16 bytes starting with `<PP-TD1>` is ignored
//! too (the counter starts at 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{
    Incoming, PeMessage, PeSession, Session, SessionEvent, SessionListener, SessionOptions,
};

/// Payload protocol identifier of Ping Pong (RSPLIB's `PPID_PPP`).
pub const PPID_PINGPONG: u32 = 33;
/// The pool RSPLIB's ping-pong programs use by default.
pub const DEFAULT_POOL: &str = "PingPongPool";
pub const T_PING: u8 = 1;
pub const T_PONG: u8 = 2;
const COOKIE_ID: &[u8; 8] = b"<PP-TD1>";

/// A Ping message.
pub fn ping(message_no: u64, data: &[u8]) -> Vec<u8> {
    let len = (12 + data.len()).min(usize::from(u16::MAX));
    let mut v = vec![T_PING, 0];
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&message_no.to_be_bytes());
    v.extend_from_slice(&data[..len - 12]);
    v
}

/// A Pong message.
pub fn pong(message_no: u64, reply_no: u64, data: &[u8]) -> Vec<u8> {
    let len = (20 + data.len()).min(usize::from(u16::MAX));
    let mut v = vec![T_PONG, 0];
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&message_no.to_be_bytes());
    v.extend_from_slice(&reply_no.to_be_bytes());
    v.extend_from_slice(&data[..len - 20]);
    v
}

/// A Ping's (MessageNo, data), if `b` is one.
pub fn parse_ping(b: &[u8]) -> Option<(u64, &[u8])> {
    if b.len() < 12 || b[0] != T_PING {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if len < 12 || len > b.len() {
        return None;
    }
    Some((u64::from_be_bytes(b[4..12].try_into().ok()?), &b[12..len]))
}

/// A Pong's (MessageNo, ReplyNo, data), if `b` is one.
pub fn parse_pong(b: &[u8]) -> Option<(u64, u64, &[u8])> {
    if b.len() < 20 || b[0] != T_PONG {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if len < 20 || len > b.len() {
        return None;
    }
    Some((
        u64::from_be_bytes(b[4..12].try_into().ok()?),
        u64::from_be_bytes(b[12..20].try_into().ok()?),
        &b[20..len],
    ))
}

/// The cookie carrying the next ReplyNo.
pub fn cookie(reply_no: u64) -> Vec<u8> {
    let mut v = COOKIE_ID.to_vec();
    v.extend_from_slice(&reply_no.to_be_bytes());
    v
}

/// The ReplyNo of a cookie, if it is one.
pub fn parse_cookie(b: &[u8]) -> Option<u64> {
    if b.len() != 16 || &b[..8] != COOKIE_ID {
        return None;
    }
    Some(u64::from_be_bytes(b[8..16].try_into().ok()?))
}

/// Serve Ping Pong on every session of `listener`.
pub async fn serve(listener: Arc<SessionListener>) {
    while let Some(s) = listener.accept().await {
        tokio::spawn(serve_session(s));
    }
}

async fn serve_session(mut s: PeSession) {
    let mut reply_no: u64 = 1;
    while let Some(m) = s.recv().await {
        match m {
            PeMessage::CookieEcho(c) => match parse_cookie(&c) {
                Some(n) => {
                    tracing::info!(peer = %s.peer(), reply_no = n, "pingpong: continuing a session after a failover");
                    reply_no = n;
                }
                None => tracing::info!(peer = %s.peer(), "pingpong: ignoring an unknown cookie"),
            },
            PeMessage::Data { tsn, ppid, data } => {
                if ppid == PPID_PINGPONG {
                    if let Some((no, body)) = parse_ping(&data) {
                        // The cookie for the next reply goes before this Pong: a client
                        // that has the Pong has the cookie too, even when the PE dies
                        // right after sending it (else the next PE repeats this ReplyNo).
                        let _ = s.send_cookie(cookie(reply_no + 1));
                        if s.send(PPID_PINGPONG, pong(no, reply_no, body))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        reply_no += 1;
                    }
                }
                let _ = s.ack(tsn);
            }
            PeMessage::BusinessCard { .. } => {}
        }
    }
}

/// What a ping-pong run saw.
#[derive(Clone, Debug, Default)]
pub struct PingReport {
    pub sent: u64,
    pub answered: u64,
    pub failovers: u64,
    /// Pongs whose ReplyNo did not follow the previous one by exactly 1.
    pub reply_jumps: u64,
    pub elapsed: Duration,
}

/// Send `count` Pings (0 = until the process ends) to `pool`, one at a time, `interval`
/// apart (0: back to back), each with `size` bytes of data; `line` gets a line per Pong
/// and per failover.
pub async fn client(
    pu: Arc<crate::pu::PoolUser>,
    pool: &str,
    count: u64,
    interval: Duration,
    size: usize,
    mut opts: SessionOptions,
    line: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<PingReport> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // The failover callback: a Ping already answered is not sent again (its Pong came,
    // only the acknowledgement was lost with the PE).
    let answered_no = Arc::new(AtomicU64::new(0));
    let seen = answered_no.clone();
    opts.on_failover = Some(Box::new(move |_old, msgs| {
        let done = seen.load(Ordering::Relaxed);
        msgs.into_iter()
            .filter(|m| parse_ping(&m.data).is_none_or(|(no, _)| no > done))
            .collect()
    }));
    let mut s = Session::connect(pu, pool, opts);
    let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut report = PingReport::default();
    let start = Instant::now();
    let mut last_reply: Option<u64> = None;
    let mut no = 1u64;
    while count == 0 || no <= count {
        s.send(PPID_PINGPONG, ping(no, &data))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        report.sent += 1;
        // Wait for this Ping's Pong (a resent Ping may bring an older one again).
        loop {
            let Some(item) = s.next().await else {
                anyhow::bail!("session ended");
            };
            match item {
                Incoming::Data {
                    ppid: PPID_PINGPONG,
                    data,
                } => {
                    let Some((m, r, _)) = parse_pong(&data) else {
                        continue;
                    };
                    if m != no {
                        // The answer to a Ping resent after a failover although its Pong
                        // was on its way (the callback ran before we saw it): the PE's
                        // counter moved on with it.
                        if m < no {
                            last_reply = Some(r);
                        }
                        continue;
                    }
                    if let Some(prev) = last_reply {
                        if r != prev + 1 {
                            report.reply_jumps += 1;
                            line(&format!("warning: reply number {r} after {prev}"));
                        }
                    }
                    last_reply = Some(r);
                    answered_no.store(m, Ordering::Relaxed);
                    report.answered += 1;
                    if !interval.is_zero() {
                        line(&format!("pong {m} reply {r}"));
                    }
                    break;
                }
                Incoming::Event(SessionEvent::Connected { pe, at, identity }) => line(&format!(
                    "connected to PE {pe} at {at}{}",
                    identity.map_or_else(String::new, |i| format!(" identity {i}"))
                )),
                Incoming::Event(SessionEvent::FailoverCompleted {
                    old,
                    new,
                    cookie,
                    identity,
                    ..
                }) => {
                    report.failovers += 1;
                    line(&format!(
                        "failover from PE {old} to PE {new}{}{}",
                        if cookie { " (cookie echoed)" } else { "" },
                        identity.map_or_else(String::new, |i| format!(" identity {i}"))
                    ));
                }
                Incoming::Event(SessionEvent::PeRefused { at, why }) => {
                    line(&format!("PE at {at} refused: {why}"))
                }
                Incoming::Event(SessionEvent::PeFailed { pe, reason }) => {
                    line(&format!("PE {pe} failed ({reason:?})"))
                }
                Incoming::Event(SessionEvent::Failed { reason }) => {
                    anyhow::bail!("pool {pool}: no PE answers ({reason:?})")
                }
                Incoming::Event(SessionEvent::BusinessCard { pool: p, pes }) => {
                    let ids: Vec<String> = pes.iter().map(|pe| pe.id.to_string()).collect();
                    line(&format!(
                        "business card: pool {p}, PEs [{}]",
                        ids.join(", ")
                    ))
                }
                _ => {}
            }
        }
        no += 1;
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    report.elapsed = start.elapsed();
    s.close();
    Ok(report)
}
