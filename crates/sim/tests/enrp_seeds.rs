//! The ENRP fault world ([`rserpool_sim::enrp_world`]: 5 registrars, 200 PEs, 20 PUs) over
//! many seeds, each twice with identical traces. `RSERPOOL_SIM_SEED=<n>` reruns one seed,
//! `RSERPOOL_SIM_SEEDS=<count>` changes how many; the binary runs 1000 and more
//! (`cargo run -p rserpool-sim --release -- --seeds 1000`).

use std::time::Instant;

use rserpool_sim::{enrp_world, seeds::check_seeds};

/// Seeds in the normal test run.
const SEEDS: u64 = 100;

#[test]
#[allow(clippy::disallowed_methods)] // the worlds' arbitrary origin
fn enrp_fault_world_converges() {
    let n = check_seeds(Instant::now(), SEEDS, |w| {
        let out = enrp_world::run(w);
        assert!(out.converged_after <= enrp_world::CONVERGENCE_BOUND);
    });
    assert!(n >= 1);
}
