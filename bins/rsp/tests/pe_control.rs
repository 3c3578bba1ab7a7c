//! A PE registered over TCP can be reached where its registrar says: the ASAP transport
//! `rsp dump` shows is a TCP transport naming the PE's ASAP control listener (its
//! registrar connections are made from that port). A registrar taking the PE over
//! connects there with a keep-alive carrying H = 1: the PE acks it and moves its home to
//! that connection; a keep-alive for another pool is dropped without an answer.
//!
//! Real processes on loopback (`rsp registrar`, `rsp serve echo`); the taking-over
//! registrar is a raw client of the test. Every wait has a deadline; the test runs under a
//! watchdog and ends with `rserpool-dissect` over the wire log.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::time::Duration;

use rserpool_wire::{AsapMessage, PeId, PoolHandle, ServerId};
use support::*;

fn keep_alive(home: bool, pool: &str, pe: PeId) -> AsapMessage {
    AsapMessage::EndpointKeepAlive {
        home,
        server_id: ServerId(0x7A4E_0001),
        handle: PoolHandle::from(pool),
        pe_id: Some(pe),
    }
}

#[test]
fn tcp_pe_is_reachable_at_its_asap_transport_and_adopts_a_new_home() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("pe-control");
        let log = dir.join("wire.log");
        let reg = start_registrar("127.0.0.1:0", &log, &[]);
        let pe = Proc::spawn(
            "serve echo",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
                "--reregister",
                "1s",
            ],
            &log,
        );
        let id_text = pe.registered_pe("did not register", Duration::from_secs(20));
        let id = PeId(u32::from_str_radix(id_text.trim_start_matches("0x"), 16).unwrap());

        // The registrar shows a TCP transport: where the PE listens for ASAP.
        let doc = dump(&reg.admin);
        let entry = doc["pools"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["handle"] == "EchoPool")
            .flat_map(|p| p["pes"].as_array().unwrap().iter())
            .find(|e| e["id"] == id_text.as_str())
            .unwrap_or_else(|| panic!("PE {id_text} not in the dump: {doc}"))
            .clone();
        let asap = entry["asap_transport"].as_str().unwrap().to_owned();
        assert!(asap.starts_with("tcp://127.0.0.1:"), "{asap}");

        // A taking-over registrar reaches it there: ACK on that connection.
        let mut taker = Raw::connect(&asap);
        taker.send_msg(&keep_alive(true, "EchoPool", id));
        match taker.recv() {
            Some(AsapMessage::EndpointKeepAliveAck { handle, pe_id }) => {
                assert_eq!(handle, PoolHandle::from("EchoPool"));
                assert_eq!(pe_id, id);
            }
            other => pe.fail(&format!("expected a keep-alive ACK, got {other:?}")),
        }

        // A stranger's claim for another pool gets no answer: the next message on its
        // connection is the ACK of the keep-alive that follows it.
        let mut stranger = Raw::connect(&asap);
        stranger.send_msg(&keep_alive(true, "OtherPool", id));
        stranger.send_msg(&keep_alive(false, "EchoPool", id));
        match stranger.recv() {
            Some(AsapMessage::EndpointKeepAliveAck { handle, .. }) => {
                assert_eq!(handle, PoolHandle::from("EchoPool"))
            }
            other => pe.fail(&format!("expected only the second ACK, got {other:?}")),
        }

        // The PE adopted the taker's connection: its next re-registration comes there.
        match taker.recv() {
            Some(AsapMessage::Registration { handle, pe: p }) => {
                assert_eq!(handle, PoolHandle::from("EchoPool"));
                assert_eq!(p.id, id);
                taker.send_msg(&AsapMessage::RegistrationResponse {
                    reject: false,
                    handle,
                    pe_id: id,
                    error: None,
                });
            }
            other => pe.fail(&format!("expected a re-registration, got {other:?}")),
        }
        // And the stranger got nothing more (its connection stays silent).
        stranger
            .s
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        match stranger.s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("stranger received {n} more bytes"),
            Err(_) => {}
        }
        pe.err
            .wait(
                0,
                std::time::Instant::now() + Duration::from_secs(10),
                |l| l.contains("new home registrar"),
            )
            .unwrap_or_else(|| pe.fail("no 'new home registrar' log line"));
        drop(taker);
        drop(stranger);
        drop(pe);
        drop(reg);
        dissect(&dir, &log, |_| true, |_| false);
    });
}
