//! The gauges nothing on the data path updates: each worker process's resident memory
//! and the arena's use, sampled every [`SAMPLE_EVERY`] while the flow exists (`metrics`
//! feature only).

use std::sync::{Arc, Weak};

use crate::metrics::SAMPLE_EVERY;
use crate::shm::arena::Arena;
use crate::stats::StageCounters;

/// Samples the gauges of `stages` now (so they hold figures as soon as the flow runs),
/// then every [`SAMPLE_EVERY`] until the flow that owns them is gone.
pub(super) fn spawn_sampler(stages: &[Arc<StageCounters>]) {
    sample(stages.iter().cloned());
    let stages: Vec<Weak<StageCounters>> = stages.iter().map(Arc::downgrade).collect();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + SAMPLE_EVERY;
        let mut every = tokio::time::interval_at(start, SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !sample(stages.iter().filter_map(Weak::upgrade)) {
                return;
            }
        }
    });
}

/// Samples each stage's workers and the arena; whether there was any stage.
fn sample(stages: impl Iterator<Item = Arc<StageCounters>>) -> bool {
    let mut any = false;
    for stage in stages {
        stage.sample_memory();
        any = true;
    }
    if let Some(arena) = Arena::existing() {
        let stats = arena.stats();
        crate::metrics::arena(stats.used, stats.capacity - stats.used);
    }
    any
}
