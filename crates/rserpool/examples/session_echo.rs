//! The session layer in one process: an acknowledging echo PE ([`SessionListener`]) and a
//! PU ([`Session`]) that sends five messages and prints the answers and events.
//!
//! ```text
//! rsp registrar --listen tcp://127.0.0.1:3863 &
//! cargo run -p rserpool --example session_echo -- tcp://127.0.0.1:3863
//! ```
//!
//! Start it twice and stop the first one's PE (Ctrl-Z the first) while the second runs:
//! the second's session fails over (the heartbeat notices), echoes the cookie and resends
//! what was not acknowledged.

use std::sync::Arc;
use std::time::Duration;

use rserpool::pe::PeOptions;
use rserpool::pu::{PoolUser, PuOptions};
use rserpool::service::session::{Incoming, PeMessage, Session, SessionListener, SessionOptions};

const POOL: &str = "SessionEchoPool";
const PPID: u32 = 0x4000_0000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:3863".into());
    let registrar = rserpool::url::parse_endpoint(&url, 3863)?;

    // The PE: register, then answer every message, send a cookie, acknowledge.
    let pe_opts = PeOptions::new(POOL)
        .registrar(registrar.clone())
        .no_announces();
    let listener = SessionListener::bind(pe_opts, "127.0.0.1:0".parse()?)?;
    if let Some(pe) = listener.pool_element() {
        pe.registered().await?;
        println!(
            "PE {:?} registered at {:?}",
            pe.pe_ids(),
            listener.endpoints()
        );
    }
    tokio::spawn(async move {
        while let Some(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut answered = 0u64;
                while let Some(m) = s.recv().await {
                    match m {
                        PeMessage::CookieEcho(c) => {
                            println!(
                                "PE: a PU failed over to me, cookie {:?}",
                                String::from_utf8_lossy(&c)
                            );
                        }
                        PeMessage::Data { tsn, ppid, data } => {
                            let _ = s.send(ppid, data).await;
                            answered += 1;
                            let _ = s.send_cookie(format!("answered {answered}").into_bytes());
                            let _ = s.ack(tsn);
                        }
                        PeMessage::BusinessCard { .. } => {}
                    }
                }
            });
        }
    });

    // The PU: one session with the pool.
    let pu = Arc::new(PoolUser::start(
        PuOptions::default().registrar(registrar).no_announces(),
    ));
    let opts = SessionOptions::default().on_failover(|old, unacked| {
        println!(
            "PU: PE {old} failed; resending {} message(s)",
            unacked.len()
        );
        unacked
    });
    let mut s = Session::connect(pu, POOL, opts);
    for i in 0..5 {
        s.send(PPID, format!("message {i}").into_bytes()).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.next()).await? {
                Some(Incoming::Data { data, .. }) => {
                    println!("PU: answer {:?}", String::from_utf8_lossy(&data));
                    break;
                }
                Some(Incoming::Event(e)) => println!("PU: {e:?}"),
                None => anyhow::bail!("session ended"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    s.close();
    Ok(())
}
