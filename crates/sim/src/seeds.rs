//! Many seeds, each run twice: a failing seed is printed, a differing trace is a failure.
//!
//! `RSERPOOL_SIM_SEED=<n>` runs only seed `n` (to reproduce a failure);
//! `RSERPOOL_SIM_SEEDS=<count>` overrides how many seeds are run.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::World;

/// Environment variable that selects one seed.
pub const SEED_VAR: &str = "RSERPOOL_SIM_SEED";
/// Environment variable that overrides the seed count.
pub const COUNT_VAR: &str = "RSERPOOL_SIM_SEEDS";

/// Trace entries printed when a single seed fails.
const TAIL: usize = 300;

/// The seeds to run: the one from `RSERPOOL_SIM_SEED`, else `0..count` (`count` from
/// `RSERPOOL_SIM_SEEDS` when set).
pub fn seeds(count: u64) -> Vec<u64> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match var(SEED_VAR) {
        Some(one) => vec![one],
        None => (0..var(COUNT_VAR).unwrap_or(count)).collect(),
    }
}

/// Run `scenario` on a fresh [`World`] (clock at `start`) for each seed of
/// [`seeds`]`(count)`, twice per seed; the two traces must be identical. A panic (a failed
/// assertion or invariant) is reported with the seed and the command line to rerun it.
/// Returns the number of seeds run.
pub fn check_seeds(start: Instant, count: u64, scenario: impl Fn(&mut World)) -> usize {
    check_seeds_sampled(start, count, 1, scenario)
}

/// Like [`check_seeds`], but only every `every`-th seed (and a single rerun seed) is run a
/// second time for the trace comparison: for large worlds, where two runs of every seed
/// would cost too much.
pub fn check_seeds_sampled(
    start: Instant,
    count: u64,
    every: u64,
    scenario: impl Fn(&mut World),
) -> usize {
    let list = seeds(count);
    for &seed in &list {
        let run = |keep: bool| {
            let mut w = World::new(start, seed);
            w.trace_mut().keep_lines(keep);
            scenario(&mut w);
            w
        };
        // A single seed (a rerun) keeps its trace lines and shows their tail on failure.
        let mut a = World::new(start, seed);
        a.trace_mut().keep_lines(list.len() == 1);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| scenario(&mut a))) {
            if let Some(lines) = a.trace().lines() {
                let from = lines.len().saturating_sub(TAIL);
                eprintln!(
                    "rserpool-sim: last trace entries:\n  {}",
                    lines[from..].join("\n  ")
                );
            }
            eprintln!("rserpool-sim: seed {seed} failed; rerun it with {SEED_VAR}={seed}");
            resume_unwind(panic)
        }
        if list.len() > 1 && seed % every.max(1) != 0 {
            continue;
        }
        let b = run(false);
        if a.trace().digest() != b.trace().digest() || a.trace().len() != b.trace().len() {
            let (a, b) = (run(true), run(true));
            let (la, lb) = (
                a.trace().lines().unwrap_or_default(),
                b.trace().lines().unwrap_or_default(),
            );
            let at = la.iter().zip(lb).position(|(x, y)| x != y);
            let show = |l: &[String], i: Option<usize>| {
                i.and_then(|i| l.get(i).cloned())
                    .unwrap_or_else(|| "<end>".into())
            };
            let i = at.or(Some(la.len().min(lb.len())));
            panic!(
                "rserpool-sim: seed {seed} is not deterministic (rerun it with {SEED_VAR}={seed}): \
                 entry {i:?} differs:\n  first:  {}\n  second: {}",
                show(la, i),
                show(lb, i)
            );
        }
    }
    list.len()
}
