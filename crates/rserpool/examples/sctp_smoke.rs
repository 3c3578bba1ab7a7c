//! SCTP smoke test for `rserpool::sctp`, meant to run inside the SCTP test VM
//! (`tests/sctp-vm/run.sh`); on a kernel without SCTP it exits with status 2.
//!
//! ```text
//! sctp_smoke basic <ip>            listener + client on <ip>, PPIDs 11/12/app, big message,
//!                                  graceful close
//! sctp_smoke multihome <ip>...     listener bound to all <ip>s (bindx), client connectx
//! sctp_smoke wildcard <wild> <ip>...  listener on <wild> ([::] or 0.0.0.0), local_addrs
//!                                  must list every <ip>; one client per <ip>
//! sctp_smoke peer-abort <ip>       client aborts: server sees COMM_LOST
//! sctp_smoke refused <ip>          connect to a closed port: prompt ECONNREFUSED
//! sctp_smoke big <ip> <size>...    messages of <size> bytes, sent before the server reads
//! sctp_smoke peer-killed <ip>      client process SIGKILLed with unread data: COMM_LOST
//! sctp_smoke peer-exit <ip>        client process exits with nothing unread: SHUTDOWN
//! sctp_smoke asap-hr <ip:port>     send an ASAP_HANDLE_RESOLUTION (PPID 11) to a
//!                                  registrar, expect ASAP_HANDLE_RESOLUTION_RESPONSE
//! sctp_smoke child <ip:port> <unread>  (internal) client process for peer-killed/-exit
//! ```
//! Exit status: 0 = pass, 1 = check failed, 2 = no SCTP in this kernel.
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rserpool::sctp::{
    is_sctp_unavailable, sctp_available, AssocEvent, RecvItem, SctpListener, SctpStream,
};

const PPID_ASAP: u32 = 11;
const PPID_ENRP: u32 = 12;
/// An application PPID ("RSP1"), as PU↔PE data would use.
const PPID_APP: u32 = 0x5253_5031;
const STEP: Duration = Duration::from_secs(10);

/// ASAP_HANDLE_RESOLUTION for pool handle "EchoPool" with the RSPLIB handle-resolution
/// option TLV (0x803f, 3 items).
const ASAP_HR: [u8; 24] = [
    0x05, 0x00, 0x00, 0x18, 0x00, 0x09, 0x00, 0x0c, 0x45, 0x63, 0x68, 0x6f, 0x50, 0x6f, 0x6f, 0x6c,
    0x80, 0x3f, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03,
];

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2 + b.len() / 4);
    for (i, x) in b.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push(' ');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn ip(s: &str) -> Result<IpAddr> {
    s.parse().with_context(|| format!("bad IP address {s:?}"))
}

/// Next item; peer address changes (heartbeats confirming further paths of a multi-homed
/// peer arrive at any time) are printed and skipped.
async fn recv(s: &mut SctpStream, who: &str) -> Result<RecvItem> {
    loop {
        let item = tokio::time::timeout(STEP, s.recv())
            .await
            .map_err(|_| anyhow!("{who}: nothing received within {STEP:?}"))?
            .with_context(|| format!("{who}: recv"))?;
        match &item {
            RecvItem::Message { ppid, stream, data } => println!(
                "  {who}: message ppid={ppid} stream={stream} len={} {}",
                data.len(),
                if data.len() <= 32 {
                    hex(data)
                } else {
                    String::new()
                }
            ),
            RecvItem::Notification(e @ AssocEvent::PeerAddrChange { .. }) => {
                println!("  {who}: {e:?} (skipped)");
                continue;
            }
            other => println!("  {who}: {other:?}"),
        }
        return Ok(item);
    }
}

async fn expect_up(s: &mut SctpStream, who: &str) -> Result<()> {
    match recv(s, who).await? {
        RecvItem::Notification(AssocEvent::Up { .. }) => Ok(()),
        other => bail!("{who}: expected association-up notification, got {other:?}"),
    }
}

async fn expect_msg(
    s: &mut SctpStream,
    who: &str,
    ppid: u32,
    stream: u16,
    data: &[u8],
) -> Result<()> {
    match recv(s, who).await? {
        RecvItem::Message {
            ppid: p,
            stream: st,
            data: d,
        } => {
            ensure!(p == ppid, "{who}: PPID {p}, expected {ppid}");
            ensure!(st == stream, "{who}: stream {st}, expected {stream}");
            ensure!(
                d == data,
                "{who}: {} bytes differ from the {} sent",
                d.len(),
                data.len()
            );
            Ok(())
        }
        other => bail!("{who}: expected a message, got {other:?}"),
    }
}

/// Reads until EOF and returns the notifications seen on the way.
async fn drain_to_eof(s: &mut SctpStream, who: &str) -> Result<Vec<AssocEvent>> {
    let mut events = Vec::new();
    loop {
        match recv(s, who).await? {
            RecvItem::Eof => return Ok(events),
            RecvItem::Notification(e) => events.push(e),
            RecvItem::Message { ppid, .. } => bail!("{who}: unexpected message ppid={ppid}"),
        }
    }
}

/// Listener on `addrs`, one client to `targets`, both sides see COMM_UP.
async fn pair(l: &SctpListener, targets: &[SocketAddr]) -> Result<(SctpStream, SctpStream)> {
    let t0 = Instant::now();
    let (c, a) = tokio::join!(
        tokio::time::timeout(STEP, SctpStream::connect(targets)),
        tokio::time::timeout(STEP, l.accept())
    );
    let mut c = c
        .map_err(|_| anyhow!("connect timed out"))?
        .with_context(|| format!("connect {targets:?}"))?;
    let (mut s, peer) = a
        .map_err(|_| anyhow!("accept timed out"))?
        .context("accept")?;
    println!(
        "  association {targets:?} up in {:?}; server sees peer {peer}",
        t0.elapsed()
    );
    c.set_nodelay(true)?;
    expect_up(&mut c, "client").await?;
    expect_up(&mut s, "server").await?;
    println!(
        "  client local_addrs={:?} peer_addrs={:?}",
        c.local_addrs()?,
        c.peer_addrs()?
    );
    println!(
        "  server local_addrs={:?} peer_addrs={:?}",
        s.local_addrs()?,
        s.peer_addrs()?
    );
    Ok((c, s))
}

/// PPID 11 / 12 / application messages both ways, including one of 100 000 bytes that
/// needs several reads.
async fn exchange(c: &mut SctpStream, s: &mut SctpStream) -> Result<()> {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.send(PPID_ASAP, 0, &ASAP_HR).await?;
    c.send(PPID_ENRP, 1, b"enrp on stream 1").await?;
    c.send(PPID_APP, 2, &big).await?;
    expect_msg(s, "server", PPID_ASAP, 0, &ASAP_HR).await?;
    expect_msg(s, "server", PPID_ENRP, 1, b"enrp on stream 1").await?;
    expect_msg(s, "server", PPID_APP, 2, &big).await?;
    s.send(PPID_APP, 3, b"pong").await?;
    s.send(PPID_ASAP, 0, &big[..3000]).await?;
    expect_msg(c, "client", PPID_APP, 3, b"pong").await?;
    expect_msg(c, "client", PPID_ASAP, 0, &big[..3000]).await?;
    Ok(())
}

fn contains_ip(list: &[SocketAddr], ip: IpAddr, port: u16) -> bool {
    list.iter().any(|a| a.ip() == ip && a.port() == port)
}

async fn basic(ip: IpAddr) -> Result<()> {
    let l = SctpListener::bind(&[SocketAddr::new(ip, 0)])?;
    let port = l.local_addr()?.port();
    println!(
        "  listening on {}, local_addrs={:?}",
        l.local_addr()?,
        l.local_addrs()?
    );
    let (mut c, mut s) = pair(&l, &[SocketAddr::new(ip, port)]).await?;
    ensure!(
        contains_ip(&c.peer_addrs()?, ip, port),
        "client peer_addrs lack {ip}:{port}"
    );
    ensure!(
        contains_ip(&s.local_addrs()?, ip, port),
        "server local_addrs lack {ip}:{port}"
    );
    exchange(&mut c, &mut s).await?;
    // graceful close by the client
    drop(c);
    let ev = drain_to_eof(&mut s, "server").await?;
    ensure!(
        ev.iter()
            .any(|e| matches!(e, AssocEvent::Shutdown | AssocEvent::ShutdownComplete)),
        "no shutdown notification before EOF: {ev:?}"
    );
    Ok(())
}

async fn multihome(ips: &[IpAddr]) -> Result<()> {
    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
    let l = SctpListener::bind(&addrs)?;
    let port = l.local_addr()?.port();
    let la = l.local_addrs()?;
    println!("  bound {addrs:?} -> port {port}, local_addrs={la:?}");
    for ip in ips {
        ensure!(
            contains_ip(&la, *ip, port),
            "listener local_addrs lack {ip}:{port}"
        );
    }
    let targets: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let (mut c, mut s) = pair(&l, &targets).await?;
    let pa = c.peer_addrs()?;
    for ip in ips {
        ensure!(
            contains_ip(&pa, *ip, port),
            "client peer_addrs lack {ip}:{port}"
        );
    }
    exchange(&mut c, &mut s).await?;
    // A client given just the first address learns the others from the INIT-ACK. (Kernel
    // address scoping: loopback addresses are only announced to a loopback peer, so a
    // client that connects to 10.0.0.1 learns only 10.0.0.1.)
    let (c2, _s2) = pair(&l, &targets[..1]).await?;
    let pa = c2.peer_addrs()?;
    for ip in ips {
        ensure!(
            contains_ip(&pa, *ip, port),
            "single-address client peer_addrs lack {ip}"
        );
    }
    Ok(())
}

async fn wildcard(wild: IpAddr, ips: &[IpAddr]) -> Result<()> {
    let l = SctpListener::bind(&[SocketAddr::new(wild, 0)])?;
    let port = l.local_addr()?.port();
    let la = l.local_addrs()?;
    println!("  bound {wild}:0 -> port {port}, local_addrs={la:?}");
    for ip in ips {
        ensure!(
            contains_ip(&la, *ip, port),
            "wildcard local_addrs lack {ip}:{port}"
        );
    }
    for ip in ips {
        let (mut c, mut s) = pair(&l, &[SocketAddr::new(*ip, port)]).await?;
        exchange(&mut c, &mut s).await?;
    }
    Ok(())
}

async fn peer_abort(ip: IpAddr) -> Result<()> {
    let l = SctpListener::bind(&[SocketAddr::new(ip, 0)])?;
    let port = l.local_addr()?.port();
    let (c, mut s) = pair(&l, &[SocketAddr::new(ip, port)]).await?;
    c.abort()?;
    let ev = drain_to_eof(&mut s, "server").await?;
    ensure!(
        ev.iter().any(|e| matches!(e, AssocEvent::Lost { .. })),
        "no association-lost notification: {ev:?}"
    );
    // sending on the dead association fails cleanly
    let e = s
        .send(PPID_ASAP, 0, b"x")
        .await
        .expect_err("send after abort");
    println!("  send after abort: {e}");
    Ok(())
}

/// Child process: connect, send one message, then wait to be killed (or exit after 2 s
/// in `exit` mode).
async fn child(target: SocketAddr, mode: &str) -> Result<()> {
    let mut c = SctpStream::connect(&[target]).await?;
    expect_up(&mut c, "child").await?;
    c.send(PPID_ASAP, 0, b"hello from child").await?;
    if mode == "exit" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::process::exit(0); // no close(): the kernel cleans up at process exit
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

async fn peer_process(ip: IpAddr, killed: bool) -> Result<()> {
    let l = SctpListener::bind(&[SocketAddr::new(ip, 0)])?;
    let port = l.local_addr()?.port();
    let exe = std::env::current_exe()?;
    let mode = if killed { "wait" } else { "exit" };
    let mut child = tokio::process::Command::new(exe)
        .args(["child", &SocketAddr::new(ip, port).to_string(), mode])
        .kill_on_drop(true)
        .spawn()
        .context("spawn child")?;
    let (mut s, peer) = tokio::time::timeout(STEP, l.accept())
        .await
        .map_err(|_| anyhow!("accept timed out"))??;
    println!("  child pid {:?} connected from {peer}", child.id());
    expect_up(&mut s, "server").await?;
    expect_msg(&mut s, "server", PPID_ASAP, 0, b"hello from child").await?;
    if killed {
        // unread data in the child's receive queue makes its close an ABORT
        s.send(PPID_APP, 0, b"never read").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        child.start_kill()?;
        let ev = drain_to_eof(&mut s, "server").await?;
        println!("  EOF {:?} after SIGKILL", t0.elapsed());
        ensure!(
            ev.iter().any(|e| matches!(e, AssocEvent::Lost { .. })),
            "no association-lost notification after SIGKILL: {ev:?}"
        );
    } else {
        let ev = drain_to_eof(&mut s, "server").await?;
        ensure!(
            ev.iter()
                .any(|e| matches!(e, AssocEvent::Shutdown | AssocEvent::ShutdownComplete)),
            "no shutdown notification after child exit: {ev:?}"
        );
    }
    let status = child.wait().await?;
    println!("  child {status}");
    Ok(())
}

async fn asap_hr(target: SocketAddr) -> Result<()> {
    let t0 = Instant::now();
    let mut c = tokio::time::timeout(STEP, SctpStream::connect(&[target]))
        .await
        .map_err(|_| anyhow!("connect to {target} timed out"))?
        .with_context(|| format!("connect to {target}"))?;
    println!(
        "  association to {target} up in {:?}; peer_addrs={:?} local_addrs={:?}",
        t0.elapsed(),
        c.peer_addrs()?,
        c.local_addrs()?
    );
    expect_up(&mut c, "client").await?;
    println!(
        "  sending ASAP_HANDLE_RESOLUTION (PPID 11): {}",
        hex(&ASAP_HR)
    );
    c.send(PPID_ASAP, 0, &ASAP_HR).await?;
    loop {
        match recv(&mut c, "client").await? {
            RecvItem::Message { ppid, stream, data } => {
                println!("  reply ppid={ppid} stream={stream} hex: {}", hex(&data));
                match rserpool_wire::decode_asap(&data) {
                    Ok(d) => println!("  decoded: {:?}", d),
                    Err(e) => println!("  rserpool-wire cannot decode it: {e}"),
                }
                ensure!(ppid == PPID_ASAP, "reply PPID {ppid}, expected 11");
                ensure!(
                    data.first() == Some(&0x06),
                    "reply type {:?}, expected 0x06 (ASAP_HANDLE_RESOLUTION_RESPONSE)",
                    data.first()
                );
                return Ok(());
            }
            RecvItem::Notification(AssocEvent::PeerAddrChange { .. }) => continue,
            other => bail!("expected a reply, got {other:?}"),
        }
    }
}

/// Messages of the given sizes, each followed by a 1-byte message, sent before the
/// server reads anything (needs partial delivery above the receive window).
async fn big(ip: IpAddr, sizes: &[usize]) -> Result<()> {
    let l = SctpListener::bind(&[SocketAddr::new(ip, 0)])?;
    let port = l.local_addr()?.port();
    let (c, mut s) = pair(&l, &[SocketAddr::new(ip, port)]).await?;
    for &n in sizes {
        let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        let t0 = Instant::now();
        let w = c.sender();
        let sender = tokio::spawn(async move {
            w.send(PPID_APP, 1, &data).await?;
            w.send(PPID_ASAP, 0, b"x").await
        });
        let want: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        expect_msg(&mut s, "server", PPID_APP, 1, &want).await?;
        expect_msg(&mut s, "server", PPID_ASAP, 0, b"x").await?;
        sender.await??;
        println!("  {n} bytes + 1 byte in {:?}", t0.elapsed());
    }
    // larger than the send buffer: a clean error, not a hang
    let sndbuf = c.send_buffer_size()?;
    let e = tokio::time::timeout(STEP, c.send(PPID_APP, 1, &vec![0u8; sndbuf + 1]))
        .await
        .map_err(|_| anyhow!("send of {} bytes hung", sndbuf + 1))?
        .err()
        .ok_or_else(|| anyhow!("send of {} bytes > SO_SNDBUF succeeded", sndbuf + 1))?;
    println!(
        "  send of {} bytes (SO_SNDBUF {sndbuf} + 1): {e}",
        sndbuf + 1
    );
    c.send(PPID_ASAP, 0, b"still usable").await?;
    expect_msg(&mut s, "server", PPID_ASAP, 0, b"still usable").await?;
    Ok(())
}

/// Connecting to a port without listener fails promptly with ECONNREFUSED (the peer
/// answers INIT with ABORT), and binding an address the host lacks fails cleanly.
async fn refused(ip: IpAddr) -> Result<()> {
    // find a free port: bind, note it, close
    let port = SctpListener::bind(&[SocketAddr::new(ip, 0)])?
        .local_addr()?
        .port();
    let t0 = Instant::now();
    let r = tokio::time::timeout(STEP, SctpStream::connect(&[SocketAddr::new(ip, port)]))
        .await
        .map_err(|_| anyhow!("connect to a closed port hung"))?;
    let e = r
        .err()
        .ok_or_else(|| anyhow!("connect to a closed port succeeded"))?;
    println!(
        "  connect to closed port {ip}:{port}: {e} after {:?}",
        t0.elapsed()
    );
    ensure!(
        e.kind() == std::io::ErrorKind::ConnectionRefused,
        "expected ConnectionRefused, got {e:?}"
    );
    let e = SctpListener::bind(&["192.0.2.1:0".parse()?])
        .err()
        .ok_or_else(|| anyhow!("bind to 192.0.2.1 succeeded"))?;
    println!("  bind to an address the host lacks: {e}");
    Ok(())
}

async fn run(args: &[String]) -> Result<()> {
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(1)..];
    let ips = || rest.iter().map(|s| ip(s)).collect::<Result<Vec<_>>>();
    let one = || -> Result<IpAddr> { ip(rest.first().ok_or_else(|| anyhow!("missing <ip>"))?) };
    match cmd {
        "basic" => basic(one()?).await,
        "multihome" => multihome(&ips()?).await,
        "wildcard" => {
            let all = ips()?;
            let (wild, ips) = all.split_first().ok_or_else(|| anyhow!("missing <wild>"))?;
            wildcard(*wild, ips).await
        }
        "peer-abort" => peer_abort(one()?).await,
        "refused" => refused(one()?).await,
        "big" => {
            let sizes = rest[1.min(rest.len())..]
                .iter()
                .map(|s| s.parse::<usize>().context("bad size"))
                .collect::<Result<Vec<_>>>()?;
            big(one()?, &sizes).await
        }
        "peer-killed" => peer_process(one()?, true).await,
        "peer-exit" => peer_process(one()?, false).await,
        "asap-hr" => {
            let t = rest.first().ok_or_else(|| anyhow!("missing <ip:port>"))?;
            asap_hr(t.parse().context("bad <ip:port>")?).await
        }
        "child" => {
            let t = rest.first().ok_or_else(|| anyhow!("missing <ip:port>"))?;
            let mode = rest.get(1).map(String::as_str).unwrap_or("wait");
            child(t.parse().context("bad <ip:port>")?, mode).await
        }
        _ => bail!("usage: sctp_smoke basic|multihome|wildcard|peer-abort|peer-killed|peer-exit|asap-hr ARGS (see source)"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !sctp_available() {
        eprintln!("sctp_smoke: no SCTP in this kernel");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sctp_smoke: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let t0 = Instant::now();
    match rt.block_on(run(&args)) {
        Ok(()) => {
            println!("sctp_smoke {}: OK ({:?})", args.join(" "), t0.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let unavailable = e
                .downcast_ref::<std::io::Error>()
                .is_some_and(is_sctp_unavailable);
            println!("sctp_smoke {}: FAILED: {e:#}", args.join(" "));
            ExitCode::from(if unavailable { 2 } else { 1 })
        }
    }
}
