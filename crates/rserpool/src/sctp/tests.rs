use super::addr::{pack_addrs, parse_sockaddr};
use super::notify::parse_notification;
use super::sys::*;
use super::*;
use std::mem::offset_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

#[test]
fn layouts_match_libc() {
    let (len0, space16) = libc_cmsg_sizes();
    assert_eq!(CMSG_HDR, len0);
    assert_eq!(SNDINFO_CMSG_SPACE, space16);
    assert_eq!(offset_of!(SctpRcvInfo, rcv_ppid), 8);
    assert_eq!(offset_of!(SctpRcvInfo, rcv_assoc_id), 24);
    assert_eq!(offset_of!(SctpSndInfo, snd_ppid), 4);
    assert_eq!(offset_of!(SctpAssocChange, sac_assoc_id), 16);
    assert_eq!(PADDR_CHANGE_LEN, 148);
}

#[test]
fn sndinfo_cmsg_roundtrip() {
    let info = SctpSndInfo {
        snd_sid: 7,
        snd_ppid: 11u32.to_be(),
        ..Default::default()
    };
    let c = build_cmsg(SCTP_SNDINFO, &info.to_bytes());
    let data = find_cmsg(&c.0, SOL_SCTP, SCTP_SNDINFO).expect("cmsg");
    assert_eq!(data, &info.to_bytes()[..]);
    assert_eq!(&data[4..8], &[0, 0, 0, 11]); // PPID in network byte order
    assert!(find_cmsg(&c.0, SOL_SCTP, SCTP_RCVINFO).is_none());
    assert!(find_cmsg(&c.0[..10], SOL_SCTP, SCTP_SNDINFO).is_none());
}

#[test]
fn sockaddr_pack_parse_roundtrip() {
    let addrs: Vec<SocketAddr> = vec![
        "127.0.0.1:3863".parse().unwrap(),
        "[::1]:9901".parse().unwrap(),
        "10.0.0.1:0".parse().unwrap(),
        "[fe80::1%2]:5".parse().unwrap(),
    ];
    let packed = pack_addrs(&addrs);
    assert_eq!(packed.len(), 16 + 28 + 16 + 28);
    let mut off = 0;
    let mut back = Vec::new();
    while off < packed.len() {
        let (a, used) = parse_sockaddr(&packed[off..]).expect("parse");
        back.push(a);
        off += used;
    }
    assert_eq!(back, addrs);
    // v4-mapped IPv6 comes back as IPv4
    let mapped: SocketAddr = "[::ffff:10.0.0.1]:7".parse().unwrap();
    let (a, _) = parse_sockaddr(&pack_addrs(&[mapped])).unwrap();
    assert_eq!(a, "10.0.0.1:7".parse::<SocketAddr>().unwrap());
    assert!(parse_sockaddr(&[0u8; 3]).is_none());
    // the kernel reports ::1 with scope id 1; only link-local keeps its scope
    let lo = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0, 1));
    let (a, _) = parse_sockaddr(&pack_addrs(&[lo])).unwrap();
    assert_eq!(a, "[::1]:9".parse::<SocketAddr>().unwrap());
}

fn assoc_change(state: u16, error: u16) -> Vec<u8> {
    let mut b = vec![0u8; ASSOC_CHANGE_LEN];
    put(&mut b, 0, &SCTP_ASSOC_CHANGE.to_ne_bytes());
    put(&mut b, 4, &(ASSOC_CHANGE_LEN as u32).to_ne_bytes());
    put(&mut b, 8, &state.to_ne_bytes());
    put(&mut b, 10, &error.to_be_bytes()); // network byte order, as the kernel does
    put(&mut b, 12, &10u16.to_ne_bytes());
    put(&mut b, 14, &5u16.to_ne_bytes());
    b
}

#[test]
fn notifications_parse() {
    assert_eq!(
        parse_notification(&assoc_change(SCTP_COMM_UP, 0)),
        AssocEvent::Up {
            outbound_streams: 10,
            inbound_streams: 5
        }
    );
    assert_eq!(
        parse_notification(&assoc_change(SCTP_COMM_LOST, 3)),
        AssocEvent::Lost { error: 3 }
    );
    assert_eq!(
        parse_notification(&assoc_change(SCTP_SHUTDOWN_COMP, 0)),
        AssocEvent::ShutdownComplete
    );
    let mut sh = vec![0u8; 12];
    put(&mut sh, 0, &SCTP_SHUTDOWN_EVENT.to_ne_bytes());
    assert_eq!(parse_notification(&sh), AssocEvent::Shutdown);
    let mut pc = vec![0u8; PADDR_CHANGE_LEN];
    put(&mut pc, 0, &SCTP_PEER_ADDR_CHANGE.to_ne_bytes());
    let a: SocketAddr = "10.0.0.1:3863".parse().unwrap();
    put(&mut pc, PADDR_ADDR_OFF, &pack_addrs(&[a]));
    put(&mut pc, PADDR_STATE_OFF, &1i32.to_ne_bytes());
    assert_eq!(
        parse_notification(&pc),
        AssocEvent::PeerAddrChange {
            addr: Some(a),
            state: PeerAddrState::Unreachable,
            error: 0
        }
    );
    // truncated / unknown input never panics
    assert!(matches!(
        parse_notification(&[1, 2]),
        AssocEvent::Other { .. }
    ));
    assert!(matches!(
        parse_notification(&assoc_change(SCTP_COMM_UP, 0)[..12]),
        AssocEvent::Other { .. }
    ));
}

/// On a kernel without SCTP (this project's build host) everything fails with the clear
/// error instead of panicking; on a kernel with SCTP (the test VM) the same test checks
/// that sockets can be created.
#[tokio::test]
async fn unavailable_is_a_clear_error_not_a_panic() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    if sctp_available() {
        eprintln!("SCTP is available here; checking that bind works instead");
        let l = SctpListener::bind(&[addr]).expect("bind");
        assert_ne!(l.local_addr().unwrap().port(), 0);
        return;
    }
    let err = SctpListener::bind(&[addr]).expect_err("bind must fail without SCTP");
    assert!(is_sctp_unavailable(&err), "{err:?}");
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    let text = err.to_string();
    assert!(text.contains("this kernel has no SCTP support"), "{text}");
    assert!(text.contains("use tcp:// instead"), "{text}");
    eprintln!("bind error: {text}");
    let err = SctpStream::connect(&[addr]).await.expect_err("connect");
    assert!(is_sctp_unavailable(&err), "{err:?}");
    let v6: SocketAddr = "[::]:0".parse().unwrap();
    assert!(is_sctp_unavailable(
        &SctpListener::bind(&[v6]).expect_err("bind v6")
    ));
    // other errors are not mistaken for "unavailable"
    assert!(!is_sctp_unavailable(&io::Error::from_raw_os_error(
        libc::ECONNREFUSED
    )));
    assert_eq!(
        SctpListener::bind(&[]).expect_err("empty").kind(),
        io::ErrorKind::InvalidInput
    );
}

/// Next item, skipping peer address changes (they arrive whenever a further path of a
/// multi-homed peer is confirmed).
async fn next(s: &mut SctpStream) -> RecvItem {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.recv())
            .await
            .expect("recv timed out")
            .expect("recv")
        {
            RecvItem::Notification(AssocEvent::PeerAddrChange { .. }) => continue,
            item => return item,
        }
    }
}

/// Full round trip over loopback; runs only where the kernel has SCTP (the VM runs the
/// test binary via tests/sctp-vm/run.sh), otherwise it says so and passes.
#[tokio::test]
async fn loopback_roundtrip_if_available() {
    if !sctp_available() {
        eprintln!("skipped: no SCTP in this kernel");
        return;
    }
    let l = SctpListener::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let port = l.local_addr().unwrap().port();
    let target: SocketAddr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let targets = [target];
    let (c, a) = tokio::join!(SctpStream::connect(&targets), l.accept());
    let mut c = c.unwrap();
    let (mut s, _peer) = a.unwrap();
    assert!(matches!(
        next(&mut c).await,
        RecvItem::Notification(AssocEvent::Up { .. })
    ));
    assert!(matches!(
        next(&mut s).await,
        RecvItem::Notification(AssocEvent::Up { .. })
    ));
    // A message longer than one read (64 KiB) is reassembled; one over the cap is
    // dropped with InvalidData and the next message still arrives.
    // Sent from another task: 150 000 bytes exceed the receive window, so the sender
    // can only finish while the receiver reads (partial delivery).
    let big: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
    let w = c.sender();
    let big2 = big.clone();
    let sender = tokio::spawn(async move {
        w.send(0x1234_5678, 3, &big2).await.unwrap();
        w.send(11, 0, b"x").await.unwrap();
    });
    assert_eq!(
        next(&mut s).await,
        RecvItem::Message {
            ppid: 0x1234_5678,
            stream: 3,
            data: big.clone()
        }
    );
    assert_eq!(
        next(&mut s).await,
        RecvItem::Message {
            ppid: 11,
            stream: 0,
            data: b"x".to_vec()
        }
    );
    sender.await.unwrap();
    s.set_max_message_size(1000);
    c.send(12, 1, &big[..5000]).await.unwrap();
    c.send(12, 1, b"after").await.unwrap();
    let e = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.recv())
            .await
            .unwrap()
        {
            Ok(RecvItem::Notification(AssocEvent::PeerAddrChange { .. })) => continue,
            r => break r.expect_err("over the cap"),
        }
    };
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        next(&mut s).await,
        RecvItem::Message {
            ppid: 12,
            stream: 1,
            data: b"after".to_vec()
        }
    );
    // split halves: send from one task while the other receives
    let (mut rd, wr) = s.into_split();
    let w2 = wr.clone();
    tokio::spawn(async move { w2.send(99, 2, b"from task").await.unwrap() });
    assert_eq!(
        next(&mut c).await,
        RecvItem::Message {
            ppid: 99,
            stream: 2,
            data: b"from task".to_vec()
        }
    );
    // graceful close by the client: server sees SHUTDOWN notification(s), then EOF
    drop(c);
    let mut saw_shutdown = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RecvItem::Notification(AssocEvent::Shutdown)
            | RecvItem::Notification(AssocEvent::ShutdownComplete) => saw_shutdown = true,
            RecvItem::Eof => break,
            RecvItem::Notification(AssocEvent::PeerAddrChange { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_shutdown);
    assert_eq!(rd.recv().await.unwrap(), RecvItem::Eof);
}
