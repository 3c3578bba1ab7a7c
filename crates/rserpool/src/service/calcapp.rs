//! RSPLIB's CalcApp protocol over the session layer: `rsp serve calcapp` (the PE, with a
//! capacity in calculations per second shared by its jobs) and `rsp calcapp` (the PU,
//! submitting jobs). A job survives the death of its PE: the PE's cookie carries its
//! progress, and the next PE continues from the echoed cookie.
//!
//! PPID 34; one 24-byte message: Type u8, Flags u8 (0), Length u16 (24), JobID u32,
//! JobSize u64, Completed u64 (big-endian). Types: 1 Request (PU → PE), 2 Accept, 3 Reject
//! (the PE runs its maximum of jobs), 4 Abort (either side), 5 Complete (Completed =
//! JobSize), 6 KeepAlive, 7 KeepAlive Ack. The cookie: JobID u32, JobSize u64, Completed u64
//! (20 bytes), sent with the Accept and then every [`CalcAppConfig::cookie_every`]
//! calculations or [`CalcAppConfig::cookie_interval`], whichever comes first. The PE
//! acknowledges a Request after its first cookie (a PU holding the acknowledgement holds
//! a cookie); it answers a KeepAlive with a KeepAlive Ack and sends none of its own (the
//! session heartbeat watches the PU). A cookie echo that is not 20 bytes, or claims more
//! done than the job's size, gets an Abort and the session is closed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{
    Incoming, PeMessage, PeSession, Session, SessionEvent, SessionListener, SessionOptions,
};

/// Payload protocol identifier of CalcApp (RSPLIB's `PPID_CALCAPP`).
pub const PPID_CALCAPP: u32 = 34;
/// The pool RSPLIB's CalcApp programs use by default.
pub const DEFAULT_POOL: &str = "CalcAppPool";
pub const T_REQUEST: u8 = 1;
pub const T_ACCEPT: u8 = 2;
pub const T_REJECT: u8 = 3;
pub const T_ABORT: u8 = 4;
pub const T_COMPLETE: u8 = 5;
pub const T_KEEPALIVE: u8 = 6;
pub const T_KEEPALIVE_ACK: u8 = 7;
const LEN: usize = 24;

/// One CalcApp message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalcMsg {
    pub kind: u8,
    pub job: u32,
    pub size: u64,
    pub completed: u64,
}

impl CalcMsg {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.kind, 0];
        v.extend_from_slice(&(LEN as u16).to_be_bytes());
        v.extend_from_slice(&self.job.to_be_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.completed.to_be_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Option<CalcMsg> {
        if b.len() < LEN || usize::from(u16::from_be_bytes([b[2], b[3]])) < LEN {
            return None;
        }
        Some(CalcMsg {
            kind: b[0],
            job: u32::from_be_bytes(b[4..8].try_into().ok()?),
            size: u64::from_be_bytes(b[8..16].try_into().ok()?),
            completed: u64::from_be_bytes(b[16..24].try_into().ok()?),
        })
    }
    fn cookie(&self) -> Vec<u8> {
        let mut v = self.job.to_be_bytes().to_vec();
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.completed.to_be_bytes());
        v
    }
    fn from_cookie(b: &[u8]) -> Option<CalcMsg> {
        if b.len() != 20 {
            return None;
        }
        let c = CalcMsg {
            kind: T_REQUEST,
            job: u32::from_be_bytes(b[0..4].try_into().ok()?),
            size: u64::from_be_bytes(b[4..12].try_into().ok()?),
            completed: u64::from_be_bytes(b[12..20].try_into().ok()?),
        };
        (c.completed <= c.size).then_some(c)
    }
}

/// Settings of a CalcApp PE.
#[derive(Clone, Debug)]
pub struct CalcAppConfig {
    /// Calculations per second, shared by the running jobs. Default 1,000,000.
    pub capacity: u64,
    /// Jobs at once; more are rejected. Default 4.
    pub max_jobs: u32,
    /// A cookie after this many calculations … Default 100,000.
    pub cookie_every: u64,
    /// … or this long, whichever first. Default 1 s.
    pub cookie_interval: Duration,
}

impl Default for CalcAppConfig {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            max_jobs: 4,
            cookie_every: 100_000,
            cookie_interval: Duration::from_secs(1),
        }
    }
}

/// How often a running job makes progress.
const TICK: Duration = Duration::from_millis(50);

/// Serve CalcApp on every session of `listener`.
pub async fn serve(listener: Arc<SessionListener>, config: CalcAppConfig) {
    let running = Arc::new(AtomicU32::new(0));
    while let Some(s) = listener.accept().await {
        tokio::spawn(serve_session(s, config.clone(), running.clone()));
    }
}

async fn send(s: &PeSession, m: CalcMsg) -> bool {
    s.send(PPID_CALCAPP, m.encode()).await.is_ok()
}

async fn serve_session(mut s: PeSession, cfg: CalcAppConfig, running: Arc<AtomicU32>) {
    // The job of this session: (message with progress, request TSN to ack).
    let mut job: Option<(CalcMsg, Option<u32>)> = None;
    let mut first = true;
    let mut tick = tokio::time::interval(TICK);
    let mut last_cookie = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            m = s.recv() => {
                let Some(m) = m else { break };
                match m {
                    PeMessage::CookieEcho(c) => {
                        let Some(j) = CalcMsg::from_cookie(&c).filter(|_| first && job.is_none()) else {
                            let _ = send(&s, CalcMsg { kind: T_ABORT, job: 0, size: 0, completed: 0 }).await;
                            s.close();
                            break;
                        };
                        tracing::info!(peer = %s.peer(), job = j.job, completed = j.completed, size = j.size, "calcapp: continuing a job after a failover");
                        running.fetch_add(1, Ordering::Relaxed);
                        last_cookie = (Instant::now(), j.completed);
                        job = Some((j, None));
                    }
                    PeMessage::Data { tsn, ppid, data } => {
                        first = false;
                        let Some(m) = (ppid == PPID_CALCAPP).then(|| CalcMsg::decode(&data)).flatten() else {
                            let _ = s.ack(tsn);
                            continue;
                        };
                        match m.kind {
                            T_REQUEST if job.is_none() => {
                                if running.load(Ordering::Relaxed) >= cfg.max_jobs {
                                    let _ = send(&s, CalcMsg { kind: T_REJECT, ..m }).await;
                                    let _ = s.ack(tsn);
                                    continue;
                                }
                                running.fetch_add(1, Ordering::Relaxed);
                                let j = CalcMsg { completed: 0, ..m };
                                if !send(&s, CalcMsg { kind: T_ACCEPT, ..j }).await {
                                    break;
                                }
                                let _ = s.send_cookie(j.cookie());
                                let _ = s.ack(tsn);
                                last_cookie = (Instant::now(), 0);
                                job = Some((j, None));
                            }
                            T_KEEPALIVE => {
                                let _ = send(&s, CalcMsg { kind: T_KEEPALIVE_ACK, ..m }).await;
                                let _ = s.ack(tsn);
                            }
                            T_ABORT => {
                                if job.take().is_some() {
                                    running.fetch_sub(1, Ordering::Relaxed);
                                }
                                let _ = s.ack(tsn);
                            }
                            _ => { let _ = s.ack(tsn); }
                        }
                    }
                    PeMessage::BusinessCard { .. } => {}
                }
            }
            _ = tick.tick(), if job.is_some() => {
                let n = u64::from(running.load(Ordering::Relaxed).max(1));
                let step = (cfg.capacity * TICK.as_millis() as u64 / 1000 / n).max(1);
                let Some((j, _)) = job.as_mut() else { continue };
                j.completed = (j.completed + step).min(j.size);
                if j.completed >= j.size {
                    let done = CalcMsg { kind: T_COMPLETE, ..*j };
                    job = None;
                    running.fetch_sub(1, Ordering::Relaxed);
                    if !send(&s, done).await {
                        break;
                    }
                } else if j.completed - last_cookie.1 >= cfg.cookie_every
                    || last_cookie.0.elapsed() >= cfg.cookie_interval
                {
                    last_cookie = (Instant::now(), j.completed);
                    let _ = s.send_cookie(j.cookie());
                }
            }
        }
    }
    if job.is_some() {
        running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Options for another session like the first (the failover callback is the default).
fn fresh(opts: &SessionOptions) -> SessionOptions {
    SessionOptions {
        config: opts.config.clone(),
        seed: None,
        on_failover: None,
        tls: opts.tls.clone(),
        mptcp: opts.mptcp,
    }
}

/// What one job took.
#[derive(Clone, Debug)]
pub struct JobReport {
    pub job: u32,
    pub size: u64,
    pub elapsed: Duration,
    pub failovers: u32,
    pub rejected: u32,
}

/// Submit `jobs` jobs of `size` calculations, one after the other, through one session;
/// `line` gets status lines. A job rejected by a full PE is submitted to another one.
pub async fn client(
    pu: Arc<crate::pu::PoolUser>,
    pool: &str,
    jobs: u32,
    size: u64,
    opts: SessionOptions,
    line: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<JobReport>> {
    let mut s = Session::connect(pu.clone(), pool, fresh(&opts));
    let mut reports = Vec::new();
    for job in 1..=jobs {
        let start = Instant::now();
        let mut rep = JobReport {
            job,
            size,
            elapsed: Duration::ZERO,
            failovers: 0,
            rejected: 0,
        };
        let req = CalcMsg {
            kind: T_REQUEST,
            job,
            size,
            completed: 0,
        };
        s.send(PPID_CALCAPP, req.encode())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        loop {
            let Some(item) = s.next().await else {
                anyhow::bail!("session ended");
            };
            match item {
                Incoming::Data {
                    ppid: PPID_CALCAPP,
                    data,
                } => {
                    let Some(m) = CalcMsg::decode(&data) else {
                        continue;
                    };
                    match m.kind {
                        T_ACCEPT if m.job == job => line(&format!("job {job} accepted")),
                        T_REJECT if m.job == job => {
                            rep.rejected += 1;
                            if rep.rejected > 16 {
                                anyhow::bail!("job {job}: rejected by every PE");
                            }
                            line(&format!("job {job} rejected; trying another PE"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            // A full PE is no failed PE: a new session, the pool's policy
                            // picks again.
                            s.close();
                            s = Session::connect(pu.clone(), pool, fresh(&opts));
                            s.send(PPID_CALCAPP, req.encode())
                                .await
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                        }
                        T_COMPLETE if m.job == job => break,
                        T_ABORT => anyhow::bail!("job {job}: the PE aborted it"),
                        T_KEEPALIVE => {
                            let ack = CalcMsg {
                                kind: T_KEEPALIVE_ACK,
                                ..m
                            };
                            let _ = s.send(PPID_CALCAPP, ack.encode()).await;
                        }
                        _ => {}
                    }
                }
                Incoming::Event(SessionEvent::Connected { pe, at, .. }) => {
                    line(&format!("connected to PE {pe} at {at}"))
                }
                Incoming::Event(SessionEvent::FailoverCompleted {
                    old, new, cookie, ..
                }) => {
                    rep.failovers += 1;
                    line(&format!(
                        "failover from PE {old} to PE {new}{}",
                        if cookie { " (cookie echoed)" } else { "" }
                    ));
                }
                Incoming::Event(SessionEvent::PeFailed { pe, reason }) => {
                    line(&format!("PE {pe} failed ({reason:?})"))
                }
                Incoming::Event(SessionEvent::Failed { reason }) => {
                    anyhow::bail!("pool {pool}: no PE can run the job ({reason:?})")
                }
                _ => {}
            }
        }
        rep.elapsed = start.elapsed();
        line(&format!(
            "job {job} complete: {size} calculations in {:.2} s, {} failover(s)",
            rep.elapsed.as_secs_f64(),
            rep.failovers
        ));
        reports.push(rep);
    }
    s.close();
    Ok(reports)
}
