//! `rsp bench flood`: how much of its resolution rate a well-behaved pool user keeps
//! while another source floods the registrar with pipelined handle resolutions
//! (issue 14: a second PU keeps at least 90 %).
//!
//! The registrar runs in this process (its own runtime, two worker threads, with
//! `--max-hr-rate` per source) or is given with `--registrar tcp://…`. The pool user
//! connects from 127.0.0.3 and resolves one request at a time (or `--pace N` per
//! second); the flood comes from 127.0.0.2 on one connection that keeps
//! `--flood-window` resolutions unanswered. Each round measures the pool user alone,
//! then beside the flood, for `--duration / --rounds` each, so both halves see the same
//! background load. Everything shares this host's cores: the flooding client's own work
//! competes with the registrar and the pool user, which a flood from another host would
//! not.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rserpool::service::bench::{self as svc, MessageConn};
use rserpool_wire::{
    asap_type, AsapMessage, CauseCode, PeId, Policy, PoolElement as WirePe, PoolHandle, ServerId,
    TransportAddr, UserTransport,
};

use crate::bench::{
    in_process, micros, prepare, requests, server_runtime, BenchArgs, FloodKind, Target, Workload,
};

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const GOOD_PU: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// What the well-behaved pool user did in one half-round.
struct Pace {
    ops: u64,
    secs: f64,
    hist: Histogram<u64>,
}

impl Pace {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ops: 0,
            secs: 0.0,
            hist: Histogram::new(3).context("histogram")?,
        })
    }
    fn add(&mut self, o: &Pace) {
        self.ops += o.ops;
        self.secs += o.secs;
        let _ = self.hist.add(&o.hist);
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let servers = server_runtime()?;
    let (target, label, _keep) = match &args.registrar {
        Some(ep) => {
            let t = Target::of(ep, &None)?;
            if !matches!(t, Target::Tcp(_)) {
                bail!("rsp bench flood measures a tcp:// registrar");
            }
            (t, format!("registrar {ep}"), None)
        }
        None => {
            let (a, running) = in_process(&servers, start_registrar(args.max_hr_rate))?;
            (
                Target::Tcp(a),
                format!(
                    "in-process registrar tcp://{a} (--max-hr-rate {})",
                    args.max_hr_rate
                ),
                Some(running),
            )
        }
    };
    let Target::Tcp(addr) = target else {
        bail!("rsp bench flood measures a tcp:// registrar");
    };
    let clients = crate::args::runtime()?;
    let _pes = clients.block_on(prepare(Workload::Flood, &target))?;
    let req = requests(Workload::Flood, 0, &target)
        .pop()
        .context("no request")?;
    let flood_rate = args.flood_rate.unwrap_or(match args.flood_kind {
        FloodKind::Resolve => 100_000,
        FloodKind::Register => 10_000,
    });
    let kind = match args.flood_kind {
        FloodKind::Resolve => "resolutions",
        FloodKind::Register => "registrations with fresh PE ids",
    };
    eprintln!(
        "rsp bench flood: {label}; pool user from {GOOD_PU}{}, flood from {FLOODER} \
         ({kind}, {}, {} in flight); {:?} in {} rounds",
        args.pace
            .map(|p| format!(" at most {p}/s"))
            .unwrap_or_else(|| " one at a time".into()),
        if flood_rate > 0 {
            format!("{flood_rate}/s")
        } else {
            "as fast as it goes".into()
        },
        args.flood_window,
        args.duration,
        args.rounds.max(1)
    );
    let rounds = args.rounds.max(1);
    let slice = args.duration / (2 * rounds);
    let (mut quiet, mut loud) = (Pace::new()?, Pace::new()?);
    let mut flood_sent = 0u64;
    let mut flood_secs = 0.0;
    let mut flood_answers = std::collections::BTreeMap::new();
    clients.block_on(async {
        let mut pu = MessageConn::connect_from(addr, GOOD_PU)
            .await
            .context("the pool user's connection")?;
        for round in 0..rounds {
            let q = good_pu(&mut pu, &req, slice, args.pace).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let msg = flood_message(args.flood_kind, &req, round);
            let f = tokio::spawn(svc::flood(
                addr,
                FLOODER,
                msg,
                args.flood_window,
                (flood_rate > 0).then_some(flood_rate),
                stop.clone(),
                classify,
            ));
            // Under way before the pool user measures.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let l = good_pu(&mut pu, &req, slice, args.pace).await?;
            stop.store(true, Ordering::Release);
            let counts = f.await.context("flood task")?.context("the flood")?;
            let secs = counts.secs;
            eprintln!(
                "round {}: pool user {:.0}/s alone, {:.0}/s beside the flood ({:.2}); \
                 flood {} sent ({:.0}/s) {:?}",
                round + 1,
                q.rate(),
                l.rate(),
                l.rate() / q.rate().max(1e-9),
                counts.sent,
                counts.sent as f64 / secs,
                counts.answers
            );
            quiet.add(&q);
            loud.add(&l);
            flood_sent += counts.sent;
            flood_secs += secs;
            for (k, v) in counts.answers {
                *flood_answers.entry(k).or_insert(0u64) += v;
            }
        }
        anyhow::Ok(())
    })?;
    println!();
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "pool user", "ops/s", "p50", "p99"
    );
    for (what, p) in [("alone", &quiet), ("beside the flood", &loud)] {
        println!(
            "{what:<22} {:>10.0} {:>10} {:>10}",
            p.rate(),
            micros(p.hist.value_at_quantile(0.5)),
            micros(p.hist.value_at_quantile(0.99))
        );
    }
    println!(
        "ratio (beside ÷ alone) {:.2}; flood {:.0} messages/s sent, answers {:?}",
        loud.rate() / quiet.rate().max(1e-9),
        flood_sent as f64 / flood_secs.max(1e-9),
        flood_answers
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolve on `pu` for `slice`: one request at a time, at most `pace` per second.
async fn good_pu(
    pu: &mut MessageConn,
    req: &[u8],
    slice: Duration,
    pace: Option<u32>,
) -> anyhow::Result<Pace> {
    let mut p = Pace::new()?;
    let start = Instant::now();
    while start.elapsed() < slice {
        if let Some(rate) = pace {
            let due = start + Duration::from_secs_f64(p.ops as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due.into()).await;
        }
        let t0 = Instant::now();
        pu.send(req).await.context("the pool user's request")?;
        let answer = pu.recv().await.map_err(anyhow::Error::msg)?;
        if answer.first() != Some(&asap_type::HANDLE_RESOLUTION_RESPONSE)
            || classify(&answer) != "answered"
        {
            bail!("the pool user got {}", classify(&answer));
        }
        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = p.hist.record(us.max(1));
        p.ops += 1;
    }
    p.secs = start.elapsed().as_secs_f64();
    Ok(p)
}

/// The flood's i-th message: the pool's handle resolution, or a registration of a PE
/// identifier nobody used before (in a pool of its own, from the flooding address).
fn flood_message(
    kind: FloodKind,
    resolution: &[u8],
    round: u32,
) -> impl FnMut(u64) -> Vec<u8> + Send + 'static {
    let resolution = resolution.to_vec();
    move |i| match kind {
        FloodKind::Resolve => resolution.clone(),
        FloodKind::Register => {
            let id = 0x4000_0000 + (round << 24) + (i as u32 & 0x00ff_ffff);
            AsapMessage::Registration {
                handle: PoolHandle::from("FloodPool"),
                pe: WirePe {
                    id: PeId(id),
                    home_registrar: ServerId(0),
                    registration_life: 60_000,
                    user_transport: UserTransport::Ip(TransportAddr::tcp(
                        1024 + (id % 60_000) as u16,
                        FLOODER,
                    )),
                    policy: Policy::RoundRobin,
                    asap_transport: None,
                },
            }
            .encode_to_vec()
        }
    }
}

fn classify(m: &[u8]) -> &'static str {
    match AsapMessage::decode(m).map(|d| d.message) {
        Ok(AsapMessage::RegistrationResponse { reject: false, .. }) => "registered",
        Ok(AsapMessage::RegistrationResponse { reject: true, .. }) => "refused",
        // The registrar probing the flood's registered PEs (not an answer).
        Ok(AsapMessage::EndpointKeepAlive { .. }) => "keep-alive",
        Ok(AsapMessage::HandleResolutionResponse {
            error: None, pes, ..
        }) if !pes.is_empty() => "answered",
        Ok(AsapMessage::HandleResolutionResponse { error: Some(e), .. })
            if e.first_code() == Some(CauseCode::UNKNOWN_POOL_HANDLE) =>
        {
            "limited (0x9)"
        }
        _ => "other",
    }
}

async fn start_registrar(max_hr_rate: u32) -> anyhow::Result<crate::registrar::Running> {
    let settings = crate::registrar::Settings {
        listen: vec!["tcp://127.0.0.1:0".into()],
        admin: Some("off".into()),
        announce: Some(false),
        enrp_listen: vec!["off".into()],
        max_hr_rate: Some(max_hr_rate),
        ..Default::default()
    };
    crate::registrar::start(settings.resolve()?).await
}
