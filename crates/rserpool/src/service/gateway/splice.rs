//! TCP mode's zero-copy path (`--splice`): each direction moves bytes socket → pipe →
//! socket with splice(2), so they never enter user space. A direction's pipe is made on its
//! first readable event (idle connections hold no pipes). End of stream on one side shuts
//! down writing on the other (half-close), as `copy_bidirectional` does.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per splice call.
const CHUNK: usize = 1 << 16;

fn flags() -> SpliceFlags {
    SpliceFlags::NONBLOCK | SpliceFlags::MOVE
}

/// Copy both ways until both directions ended; (client → PE, PE → client) bytes.
pub(super) async fn both_ways(
    a: &TcpStream,
    b: &TcpStream,
    last: &AtomicU64,
    epoch: Instant,
) -> io::Result<(u64, u64)> {
    let (up, down) = tokio::join!(one_way(a, b, last, epoch), one_way(b, a, last, epoch));
    Ok((up?, down?))
}

async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    last: &AtomicU64,
    epoch: Instant,
) -> io::Result<u64> {
    let mut pipe: Option<(OwnedFd, OwnedFd)> = None;
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let (pr, pw) = match &pipe {
            Some(p) => p,
            None => pipe.insert(pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?),
        };
        let n = match from.try_io(Interest::READABLE, || {
            splice(from, None, pw, None, CHUNK, flags()).map_err(io::Error::from)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
            return Ok(total);
        }
        let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pr, None, to, None, left, flags()).map_err(io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}
