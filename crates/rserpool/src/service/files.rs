//! The file service of the session layer (the seeds' FTP example): `rsp serve files DIR`
//! serves the files of one directory as a PE; `rsp fetch POOL NAME -o OUT` downloads one
//! through a [`Session`], and when the serving PE dies mid-way the download resumes at
//! its offset on another PE.
//!
//! # Messages (PPID [`PPID_FILES`], all integers big-endian)
//!
//! | Type | Direction | After the 4-byte header (type u8, 3 bytes 0) |
//! |---|---|---|
//! | 1 Request | PU → PE | offset u64, file name (UTF-8, a plain name: no `/`, not `.` or `..`) |
//! | 2 Chunk | PE → PU | offset u64, up to [`CHUNK`] bytes of the file |
//! | 3 Done | PE → PU | size u64, checksum u64 (of the whole file) |
//! | 4 Error | PE → PU | text |
//!
//! The cookie (sent before the first chunk and after every [`COOKIE_EVERY`] bytes):
//! `RSPFILE1`, offset u64 (bytes sent before it), size u64, checksum u64, name. The PE
//! acknowledges a request once it has opened the file; a PE that receives a cookie echo
//! (always the first message after a failover) checks that its copy of the file has the
//! same size and checksum and continues at the cookie's offset; the PU drops what it
//! already has. A cookie echo that does not decode, names a file the PE does not have
//! or a different content, or comes after a request on the same session, gets an Error
//! and the session is closed; nothing else is disturbed. A forged but well-formed cookie
//! is no more than a request for the file it names.
//!
//! The checksum is a 64-bit multiply-rotate hash over the file's 8-byte words (a
//! shorter tail zero-padded), computed once per file at start-up: it tells copies apart,
//! it is no cryptographic digest.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{PeMessage, PeSession, SessionListener};

/// The PPID of the file service's messages (private: 'RSPF').
pub const PPID_FILES: u32 = 0x5253_5046;
/// Bytes of file per Chunk message.
pub const CHUNK: usize = 64_000;
/// A fresh cookie after this many bytes.
pub const COOKIE_EVERY: u64 = 1 << 20;
const COOKIE_MAGIC: &[u8; 8] = b"RSPFILE1";

pub const T_REQUEST: u8 = 1;
pub const T_CHUNK: u8 = 2;
pub const T_DONE: u8 = 3;
pub const T_ERROR: u8 = 4;

/// The content checksum (see the module docs), computed incrementally.
#[derive(Clone, Debug)]
pub struct Checksum {
    h: u64,
    tail: [u8; 8],
    tail_len: usize,
}

impl Default for Checksum {
    fn default() -> Self {
        Self {
            h: 0x9e37_79b9_7f4a_7c15,
            tail: [0; 8],
            tail_len: 0,
        }
    }
}

impl Checksum {
    fn word(h: u64, w: u64) -> u64 {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(23)
    }
    pub fn update(&mut self, mut data: &[u8]) {
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 8 {
                return;
            }
            self.h = Self::word(self.h, u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut h = self.h;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = Self::word(h, u64::from_le_bytes(w));
        }
        self.h = h;
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }
    pub fn finish(&self) -> u64 {
        let mut h = self.h;
        if self.tail_len > 0 {
            let mut w = [0u8; 8];
            w[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            h = Self::word(h, u64::from_le_bytes(w));
        }
        h
    }
}

/// A file's size and checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub checksum: u64,
}

/// Compute a file's [`FileInfo`] (blocking).
pub fn file_info(path: &Path) -> io::Result<FileInfo> {
    let mut f = std::fs::File::open(path)?;
    let mut c = Checksum::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        c.update(&buf[..n]);
    }
    Ok(FileInfo {
        size,
        checksum: c.finish(),
    })
}

/// The cookie's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub offset: u64,
    pub info: FileInfo,
    pub name: String,
}

impl Cookie {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = COOKIE_MAGIC.to_vec();
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.info.size.to_be_bytes());
        v.extend_from_slice(&self.info.checksum.to_be_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Option<Cookie> {
        if b.len() < 32 || &b[..8] != COOKIE_MAGIC {
            return None;
        }
        let u = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Some(Cookie {
            offset: u(8),
            info: FileInfo {
                size: u(16),
                checksum: u(24),
            },
            name: String::from_utf8(b[32..].to_vec()).ok()?,
        })
    }
}

/// A Request message.
pub fn request(name: &str, offset: u64) -> Vec<u8> {
    let mut v = vec![T_REQUEST, 0, 0, 0];
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

/// Parse a Request: (offset, name).
pub fn parse_request(b: &[u8]) -> Option<(u64, String)> {
    if b.len() < 12 || b[0] != T_REQUEST {
        return None;
    }
    let off = u64::from_be_bytes(b[4..12].try_into().ok()?);
    Some((off, String::from_utf8(b[12..].to_vec()).ok()?))
}

fn error(text: &str) -> Vec<u8> {
    let mut v = vec![T_ERROR, 0, 0, 0];
    v.extend_from_slice(text.as_bytes());
    v
}

/// Whether `name` is a plain file name (no directory parts).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// The files a PE serves: every regular file of one directory, with its size and
/// checksum (computed at start-up).
#[derive(Debug)]
pub struct Catalogue {
    dir: PathBuf,
    files: HashMap<String, FileInfo>,
}

impl Catalogue {
    /// Scan `dir` (blocking: reads every file once).
    pub fn scan(dir: &Path) -> io::Result<Catalogue> {
        let mut files = HashMap::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if !e.file_type()?.is_file() {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            files.insert(name, file_info(&e.path())?);
        }
        Ok(Catalogue {
            dir: dir.to_owned(),
            files,
        })
    }
    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
    fn get(&self, name: &str) -> Option<FileInfo> {
        if !plain_name(name) {
            return None;
        }
        self.files.get(name).copied()
    }
}

/// Serve sessions of `listener` from `cat` until the listener ends.
pub async fn serve(listener: Arc<SessionListener>, cat: Arc<Catalogue>) {
    while let Some(s) = listener.accept().await {
        tokio::spawn(serve_session(s, cat.clone()));
    }
}

/// How long a PU may leave the session's queue full before the PE gives up on it.
const STALL: Duration = Duration::from_secs(30);

async fn serve_session(mut s: PeSession, cat: Arc<Catalogue>) {
    let peer = s.peer();
    let mut first = true;
    let (name, offset, info, ack) = loop {
        let Some(m) = s.recv().await else { return };
        match m {
            PeMessage::CookieEcho(c) if first => {
                let Some(c) = Cookie::decode(&c) else {
                    let _ = s.send(PPID_FILES, error("bad cookie")).await;
                    tracing::info!(%peer, "files: undecodable cookie echo; session closed");
                    s.close();
                    return;
                };
                match cat.get(&c.name) {
                    Some(info) if info == c.info && c.offset <= info.size => {
                        tracing::info!(%peer, name = %c.name, offset = c.offset, "files: resuming after a failover");
                        break (c.name, c.offset, info, None);
                    }
                    _ => {
                        let _ = s
                            .send(
                                PPID_FILES,
                                error("cookie names a file this PE does not have"),
                            )
                            .await;
                        s.close();
                        return;
                    }
                }
            }
            PeMessage::CookieEcho(_) => {
                let _ = s
                    .send(PPID_FILES, error("a cookie echo must be the first message"))
                    .await;
                s.close();
                return;
            }
            PeMessage::Data { tsn, ppid, data } => {
                first = false;
                let req = (ppid == PPID_FILES).then(|| parse_request(&data)).flatten();
                let Some((off, name)) = req else {
                    let _ = s.send(PPID_FILES, error("not a file request")).await;
                    let _ = s.ack(tsn);
                    continue;
                };
                match cat.get(&name) {
                    Some(info) if off <= info.size => {
                        tracing::info!(%peer, %name, offset = off, "files: request");
                        break (name, off, info, Some(tsn));
                    }
                    _ => {
                        let _ = s
                            .send(PPID_FILES, error(&format!("no such file: {name}")))
                            .await;
                        let _ = s.ack(tsn);
                    }
                }
            }
            PeMessage::BusinessCard { .. } => first = false,
        }
    };
    let path = cat.dir.join(&name);
    let r = send_file(&s, &path, &name, offset, info, ack).await;
    if let Err(e) = r {
        tracing::info!(%peer, %name, "files: transfer ended: {e}");
        s.close();
        return;
    }
    // Wait for the PU to close (or anything else it asks: ignored).
    while s.recv().await.is_some() {}
}

async fn send_file(
    s: &PeSession,
    path: &Path,
    name: &str,
    offset: u64,
    info: FileInfo,
    mut ack: Option<u32>,
) -> io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut pos = offset;
    let mut next_cookie = pos;
    let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "session closed");
    loop {
        if pos >= next_cookie {
            let c = Cookie {
                offset: pos,
                info,
                name: name.to_owned(),
            };
            s.send_cookie(c.encode()).map_err(|_| gone())?;
            next_cookie = pos + COOKIE_EVERY;
            // The request is acknowledged after the first cookie: a PU that has the ack
            // has a cookie to resume with.
            if let Some(tsn) = ack.take() {
                s.ack(tsn).map_err(|_| gone())?;
            }
        }
        let mut msg = vec![T_CHUNK, 0, 0, 0];
        msg.extend_from_slice(&pos.to_be_bytes());
        msg.resize(12 + CHUNK, 0);
        let n = read_full(&mut f, &mut msg[12..])?;
        if n == 0 {
            break;
        }
        msg.truncate(12 + n);
        match tokio::time::timeout(STALL, s.send(PPID_FILES, msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(gone()),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the PU has not read for 30 s",
                ))
            }
        }
        pos += n as u64;
    }
    let mut done = vec![T_DONE, 0, 0, 0];
    done.extend_from_slice(&info.size.to_be_bytes());
    done.extend_from_slice(&info.checksum.to_be_bytes());
    s.send(PPID_FILES, done).await.map_err(|_| gone())
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// What a download did.
#[derive(Clone, Debug, Default)]
pub struct FetchReport {
    pub size: u64,
    pub checksum: u64,
    /// One entry per failover: (old PE, new PE, gap = last byte from the old PE to the
    /// first byte from the new one, detection = last byte to the failure being noticed).
    pub failovers: Vec<Failover>,
    pub elapsed: Duration,
}

#[derive(Clone, Debug)]
pub struct Failover {
    pub old: rserpool_wire::PeId,
    pub new: rserpool_wire::PeId,
    pub reason: String,
    pub detected_after: Duration,
    pub gap: Duration,
}

/// Download `name` from `pool` into `out` through a session; `status` gets the status
/// lines (connected, failover, gap).
pub async fn fetch(
    pu: Arc<crate::pu::PoolUser>,
    pool: &str,
    name: &str,
    out: &mut (dyn io::Write + Send),
    mut opts: super::session::SessionOptions,
    status: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<FetchReport> {
    use super::session::{Incoming, Session, SessionEvent};
    use std::sync::atomic::{AtomicU64, Ordering};
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    // The failover callback: a request not acknowledged yet asks for what is missing.
    opts.on_failover = Some(Box::new(move |_old, msgs| {
        msgs.into_iter()
            .map(|mut m| {
                if let Some((_, n)) = parse_request(&m.data) {
                    m.data = request(&n, r2.load(Ordering::Relaxed));
                }
                m
            })
            .collect()
    }));
    let start = Instant::now();
    let mut s = Session::connect(pu, pool, opts);
    s.send(PPID_FILES, request(name, 0))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sum = Checksum::default();
    let mut report = FetchReport::default();
    let mut last_byte = Instant::now();
    let mut failing: Option<(rserpool_wire::PeId, String, Duration)> = None;
    let mut pending: Option<Failover> = None;
    loop {
        let Some(item) = s.next().await else {
            anyhow::bail!("session ended");
        };
        match item {
            Incoming::Event(ev) => match ev {
                SessionEvent::Connected { pe, at, .. } => {
                    status(&format!("connected to PE {pe} at {at}"))
                }
                SessionEvent::PeFailed { pe, reason } => {
                    let after = last_byte.elapsed();
                    status(&format!(
                        "PE {pe} failed ({reason:?}) {:.1} ms after its last byte",
                        after.as_secs_f64() * 1e3
                    ));
                    failing.get_or_insert((pe, format!("{reason:?}"), after));
                }
                SessionEvent::FailoverCompleted {
                    old,
                    new,
                    at,
                    cookie,
                    ..
                } => {
                    status(&format!(
                        "failover from PE {old} to PE {new} at {at}{}",
                        if cookie { " (cookie echoed)" } else { "" }
                    ));
                    let (_, reason, detected_after) =
                        failing
                            .take()
                            .unwrap_or((old, String::new(), Duration::ZERO));
                    pending = Some(Failover {
                        old,
                        new,
                        reason,
                        detected_after,
                        gap: Duration::ZERO,
                    });
                }
                SessionEvent::Failed { reason } => {
                    anyhow::bail!("pool {pool}: no PE could serve the download ({reason:?})")
                }
                _ => {}
            },
            Incoming::Data { ppid, data } if ppid == PPID_FILES && !data.is_empty() => {
                match data[0] {
                    T_CHUNK if data.len() >= 12 => {
                        let off = u64::from_be_bytes(data[4..12].try_into()?);
                        let have = received.load(Ordering::Relaxed);
                        let body = &data[12..];
                        if off > have {
                            anyhow::bail!("the PE skipped bytes {have}..{off}");
                        }
                        let skip = ((have - off) as usize).min(body.len());
                        let new = &body[skip..];
                        if !new.is_empty() {
                            if let Some(mut f) = pending.take() {
                                f.gap = last_byte.elapsed();
                                status(&format!(
                                    "failover gap: {:.1} ms from the last byte of PE {} to the first byte of PE {} (failure noticed after {:.1} ms)",
                                    f.gap.as_secs_f64() * 1e3,
                                    f.old,
                                    f.new,
                                    f.detected_after.as_secs_f64() * 1e3
                                ));
                                report.failovers.push(f);
                            }
                            out.write_all(new)?;
                            sum.update(new);
                            received.fetch_add(new.len() as u64, Ordering::Relaxed);
                            last_byte = Instant::now();
                        }
                    }
                    T_DONE if data.len() >= 20 => {
                        let size = u64::from_be_bytes(data[4..12].try_into()?);
                        let checksum = u64::from_be_bytes(data[12..20].try_into()?);
                        let have = received.load(Ordering::Relaxed);
                        if have != size || sum.finish() != checksum {
                            anyhow::bail!(
                                "download of {name} incomplete or corrupt: {have} of {size} bytes, checksum {:016x} vs {checksum:016x}",
                                sum.finish()
                            );
                        }
                        out.flush()?;
                        s.close();
                        report.size = size;
                        report.checksum = checksum;
                        report.elapsed = start.elapsed();
                        return Ok(report);
                    }
                    T_ERROR => {
                        anyhow::bail!("the PE refused: {}", String::from_utf8_lossy(&data[4..]))
                    }
                    _ => {}
                }
            }
            Incoming::Data { .. } => {}
        }
    }
}
