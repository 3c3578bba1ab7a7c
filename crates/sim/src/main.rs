//! `rserpool-sim`: the ENRP fault world over many seeds.
//!
//! ```text
//! cargo run -p rserpool-sim --release -- --seeds 1000     # seeds 0..1000
//! cargo run -p rserpool-sim --release -- --seed 17        # one seed (trace tail on failure)
//! cargo run -p rserpool-sim --release -- --seeds 100 --twice   # each seed twice, traces compared
//! cargo run -p rserpool-sim --release -- --seed 17 --grep 0x000100a2   # trace lines of a failure
//! ```
//!
//! Prints progress and every failing seed; exit status 1 when a seed failed, 2 on a usage
//! error. `RSERPOOL_SIM_SEED=<n>` works as `--seed n`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
#[allow(clippy::disallowed_types)] // wall-clock progress of the command, not of a world
use std::time::Instant as WallClock;

use rserpool_sim::{enrp_world, seeds, World};

fn usage() -> ExitCode {
    eprintln!("usage: rserpool-sim [--seeds N] [--from S] [--seed N [--grep TEXT]] [--twice]");
    ExitCode::from(2)
}

#[allow(clippy::disallowed_methods)] // wall clock for progress and the worlds' origin
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut count = 1000u64;
    let mut from = 0u64;
    let mut one: Option<u64> = std::env::var(seeds::SEED_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let mut twice = false;
    let mut grep: Option<String> = None;
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--seeds" => match num() {
                Some(n) => count = n,
                None => return usage(),
            },
            "--from" => match num() {
                Some(n) => from = n,
                None => return usage(),
            },
            "--seed" => match num() {
                Some(n) => one = Some(n),
                None => return usage(),
            },
            "--twice" => twice = true,
            "--grep" => match args.next() {
                Some(g) => grep = Some(g),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let list: Vec<u64> = match one {
        Some(s) => vec![s],
        None => (from..from + count).collect(),
    };
    let started = WallClock::now();
    let origin = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut worst = std::time::Duration::ZERO;
    let single = list.len() == 1;
    for (k, &seed) in list.iter().enumerate() {
        let run = |keep: bool| {
            let mut w = World::new(origin, seed);
            w.trace_mut().keep_lines(keep);
            let r = catch_unwind(AssertUnwindSafe(|| enrp_world::run(&mut w)));
            (w, r)
        };
        if !single {
            std::panic::set_hook(Box::new(|_| {}));
        }
        let (w, r) = run(single);
        let _ = std::panic::take_hook();
        match r {
            Ok(out) => {
                worst = worst.max(out.converged_after);
                if twice {
                    let (w2, _) = run(false);
                    if w2.trace().digest() != w.trace().digest() {
                        eprintln!("seed {seed}: not deterministic");
                        failed.push(seed);
                    }
                }
            }
            Err(_) => {
                if let (Some(g), Some(lines)) = (&grep, w.trace().lines()) {
                    for l in lines.iter().filter(|l| l.contains(g.as_str())) {
                        eprintln!("{l}");
                    }
                } else if let Some(lines) = w.trace().lines() {
                    let from = lines.len().saturating_sub(300);
                    eprintln!("last trace entries:\n  {}", lines[from..].join("\n  "));
                }
                eprintln!(
                    "seed {seed} FAILED; rerun it with: cargo run -p rserpool-sim --release -- --seed {seed}"
                );
                failed.push(seed);
            }
        }
        if (k + 1) % 50 == 0 || k + 1 == list.len() {
            println!(
                "{} / {} seeds, {} failed, slowest convergence {:?} (virtual), {:.1} s",
                k + 1,
                list.len(),
                failed.len(),
                worst,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if failed.is_empty() {
        println!("all {} seeds passed", list.len());
        ExitCode::SUCCESS
    } else {
        println!("failing seeds: {failed:?}");
        ExitCode::from(1)
    }
}
