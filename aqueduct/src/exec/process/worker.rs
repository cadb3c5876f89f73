//! The worker process's side: run `init`, report readiness, then serve batches from the
//! control region until the parent asks it to close or disappears.

use std::sync::atomic::{fence, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::channel::*;
use super::spawn::Boot;
use super::stage_hash;
use crate::shapes::catch;
use crate::shm::arena;
use crate::Stage;

/// How long the worker sleeps between checks that its parent is still alive (a backstop
/// for `PR_SET_PDEATHSIG`).
const PARENT_CHECK_MS: i32 = 500;

/// The entry of a worker process running stage `S`, reached through a function handle.
pub(crate) fn worker_entry<S: Stage>(boot: Boot) -> i32 {
    if boot.spec.stage_hash != stage_hash::<S>() {
        return boot.refuse(&format!(
            "worker refused: stage `{}` or its task layouts differ from the parent's",
            S::NAME
        ));
    }
    let geometry = boot.spec.geometry;
    if !geometry.is_valid()
        || geometry.input_size != size_of::<S::Input>()
        || geometry.output_size != size_of::<S::Output>()
        || geometry.region_len() > boot.ctl.len()
    {
        return boot.refuse("worker refused: slot geometry does not match the stage");
    }
    let ctl = &boot.ctl;
    let mut state = match catch(S::init).and_then(|r| r) {
        Ok(state) => state,
        Err(message) => {
            ctl.write_message(&message);
            ctl.u32(OFF_STATE)
                .store(STATE_INIT_FAILED, Ordering::Release);
            boot.resp.notify();
            return 2;
        }
    };
    ctl.u32(OFF_STATE).store(STATE_READY, Ordering::Release);
    boot.resp.notify();

    let mut seen = 0u64;
    while let Some(seq) = next_request(&boot, seen) {
        let ahead = seq - seen;
        if ahead > geometry.lanes as u64 {
            eprintln!("aqueduct worker: request {seq} published while {seen} was the last taken and only {} may be outstanding; exiting", geometry.lanes);
            return 6;
        }
        // Requests run in order, even when the parent has published two.
        let seq = seen + 1;
        seen = seq;
        let Some(lane) = (0..geometry.lanes)
            .find(|&lane| ctl.u64(geometry.tag_offset(lane)).load(Ordering::Acquire) == seq)
        else {
            eprintln!("aqueduct worker: request {seq} is in no lane; exiting");
            return 6;
        };
        let count = ctl.read_u32(geometry.req_count_offset(lane)).unwrap_or(0) as usize;
        if count == 0 || count > geometry.batch_cap {
            eprintln!("aqueduct worker: request of {count} tasks is out of range; exiting");
            return 6;
        }
        ctl.u64(OFF_TAKEN_SEQ).store(seq, Ordering::Release);
        let inputs: Vec<S::Input> = (0..count)
            .map(|i| {
                let mut input = <S::Input as bytemuck::Zeroable>::zeroed();
                ctl.read(
                    geometry.request_offset(lane, i),
                    bytemuck::bytes_of_mut(&mut input),
                );
                input
            })
            .collect();
        arena::reset_worker_scratch(geometry.scratch_window(boot.spec.scratch_len, lane));
        let results =
            crate::exec::in_batches::<S>(&mut state, inputs, crate::exec::call_handler::<S>);
        for (i, result) in results.iter().enumerate() {
            let at = geometry.response_offset(lane, i);
            match result {
                Ok(output) => {
                    let bytes = bytemuck::bytes_of(output);
                    ctl.write(at + RESP_HEADER, bytes);
                    ctl.write_u32(at, STATUS_OK);
                    ctl.write_u32(at + 4, bytes.len() as u32);
                }
                Err(message) => {
                    let text = truncate_utf8(message, geometry.slot_data().min(ERR_CAP));
                    ctl.write(at + RESP_HEADER, text.as_bytes());
                    ctl.write_u32(at, STATUS_ERR);
                    ctl.write_u32(at + 4, text.len() as u32);
                }
            }
        }
        ctl.write_u32(geometry.resp_count_offset(lane), count as u32);
        ctl.u64(OFF_RESP_SEQ).store(seq, Ordering::Release);
        boot.resp.notify();
    }
    0
}

/// Waits for a request newer than `seen` and returns the newest published; `None` when
/// the parent asked the worker to close or is gone.
fn next_request(boot: &Boot, seen: u64) -> Option<u64> {
    let ctl = &boot.ctl;
    let mut spin = spin_budget();
    loop {
        if ctl.u32(OFF_CLOSING).load(Ordering::Acquire) != 0 {
            return None;
        }
        let seq = ctl.u64(OFF_REQ_SEQ).load(Ordering::Acquire);
        if seq > seen {
            return Some(seq);
        }
        // Just answered a batch: the next request often follows within microseconds, and
        // catching it here saves a sleep and a wake-up (~10 us each on small VMs). The
        // spin is short and bounded, and happens only right after work.
        if spin_until_request(ctl, seen, spin) {
            continue;
        }
        spin = Duration::ZERO;
        // Event count: announce the sleep, then re-check, so a request published in
        // between is either seen here or followed by a wake-up.
        ctl.u32(OFF_WORKER_WAITING).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ctl.u64(OFF_REQ_SEQ).load(Ordering::SeqCst) > seen
            || ctl.u32(OFF_CLOSING).load(Ordering::SeqCst) != 0
        {
            ctl.u32(OFF_WORKER_WAITING).store(0, Ordering::SeqCst);
            continue;
        }
        let woken = boot.req.wait(PARENT_CHECK_MS);
        ctl.u32(OFF_WORKER_WAITING).store(0, Ordering::SeqCst);
        // SAFETY: getppid has no preconditions.
        if !woken && unsafe { libc::getppid() } as u32 != boot.spec.parent_pid {
            return None;
        }
    }
}

/// How long a worker spins for the next request after answering one: `AQUEDUCT_SPIN_US`
/// microseconds (default 0: off). Spinning pays only when cores are idle: measured on a
/// loaded 2-core VM, a 20 us spin made the 64-byte round trip slower (p50 47-55 us vs 33).
fn spin_budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let micros = std::env::var("AQUEDUCT_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if cores < 2 {
            Duration::ZERO
        } else {
            Duration::from_micros(micros)
        }
    })
}

/// Spins up to `budget` for a request newer than `seen`.
fn spin_until_request(ctl: &Region, seen: u64, budget: Duration) -> bool {
    if budget.is_zero() {
        return false;
    }
    let started = Instant::now();
    while started.elapsed() < budget {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        if ctl.u64(OFF_REQ_SEQ).load(Ordering::Acquire) > seen
            || ctl.u32(OFF_CLOSING).load(Ordering::Acquire) != 0
        {
            return true;
        }
    }
    false
}
