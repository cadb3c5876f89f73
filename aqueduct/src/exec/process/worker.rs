//! The worker process's side: run `init`, report readiness, then serve batches from the
//! control region until the parent asks it to close or disappears.

use std::rc::Rc;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use super::channel::Region;
use super::exit;
use super::logs;
use super::request_progress::RequestProgress;
use super::spawn::Boot;
use super::stage_hash;
use super::wire::{self, BadRequest, Outcome, Report, WorkerState};
use crate::platform::{clock, process};
use crate::progress::Observer;
use crate::shapes::catch;
use crate::shm::arena;
use crate::spin::{NextWork, SpinWait, EXPECTED_POLL};
use crate::Stage;

/// How often the worker's watch thread checks that its parent is still alive (a backstop
/// for `PR_SET_PDEATHSIG`).
const PARENT_CHECK: Duration = Duration::from_millis(500);

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
    // The worker's for its life: what the handler calls are told through (see
    // `RequestProgress`) must outlive any one of them.
    let boot: &'static Boot = Box::leak(Box::new(boot));
    let ctl = &boot.ctl;
    let mut state = match catch(S::init).and_then(|r| r) {
        Ok(state) => state,
        Err(message) => {
            ctl.set_state(WorkerState::InitFailed, &message);
            boot.resp.notify();
            return exit::INIT_FAILED;
        }
    };
    super::fault::attach(ctl, geometry);
    watch_parent(boot.spec.parent_pid);
    ctl.set_state(WorkerState::Ready, "");
    boot.resp.notify();

    let mut next_work = NextWork::new(boot.spec.idle_spin());
    wire::decline_expected(ctl, next_work.declines_expected());
    // When the worker last answered (`CLOCK_MONOTONIC` ns, comparable with the parent's
    // publication times).
    let mut answered_ns: Option<u64> = None;
    let mut seen = 0u64;
    let mut bytes = Vec::new();
    let progress = Rc::new(RequestProgress::<S>::new(ctl, geometry));
    let observer: Rc<dyn Observer> = progress.clone();
    while let Some(newest) = next_request(boot, seen, &mut next_work) {
        if newest - seen > geometry.lanes as u64 {
            eprintln!("aqueduct worker: request {newest} published while {seen} was the last taken and only {} may be outstanding; exiting", geometry.lanes);
            return exit::PROTOCOL;
        }
        // Requests run in order, even when the parent has published two.
        let seq = seen + 1;
        seen = seq;
        // A request that fails its checks is never taken: the parent sees this worker
        // die with the request untaken and sends it, intact, to the replacement.
        let lane = match wire::read_request(ctl, &geometry, seq, &mut bytes) {
            Ok(lane) => lane,
            Err(BadRequest(reason)) => {
                eprintln!("aqueduct worker: {reason}; exiting");
                return exit::PROTOCOL;
            }
        };
        let published = wire::published_ns(ctl, &geometry, lane);
        if let Some(answered_ns) = answered_ns {
            next_work.arrived_after(Duration::from_nanos(published.saturating_sub(answered_ns)));
        }
        next_work.took_task();
        if next_work.judges_catch() {
            let seen = clock::monotonic_ns().saturating_sub(published);
            next_work.caught_after(Duration::from_nanos(seen));
        }
        wire::decline_expected(ctl, next_work.declines_expected());
        wire::take(ctl, &geometry, lane, seq);
        super::fault::running(lane, seq);
        arena::reset_worker_scratch(geometry.scratch_window(boot.spec.scratch_len, lane), seq);
        logs::running(seq);
        // Two clock readings a request: its handler's time, and (the second) when it
        // was answered, near enough, for the idle poll.
        let started_ns = clock::monotonic_ns();
        progress.start(lane, seq);
        let count = run_request::<S>(&mut state, &bytes, &progress, &observer);
        let finished_ns = clock::monotonic_ns();
        let report = Report {
            compute_ns: finished_ns.saturating_sub(started_ns),
            log_lines: logs::running(0),
        };
        wire::write_report(ctl, &geometry, lane, report);
        wire::publish_answer(ctl, &geometry, lane, seq, count);
        if wire::parent_sleeps(ctl) {
            boot.resp.notify();
        }
        answered_ns = Some(finished_ns);
    }
    exit::CLOSED
}

/// Runs the handler on a request's tasks (`bytes`, as read from the request), one call
/// per `batch_size` of them, each call's tasks recorded as begun before it starts and
/// each result written as it comes (see [`RequestProgress`]); the number of results. No vector
/// of the whole request's tasks or results is built: for large tasks those were the
/// worker's largest allocations, fresh pages at every request (W10, 8 KiB tasks in runs
/// of 64: two 512 KiB vectors a request).
fn run_request<S: Stage>(
    state: &mut S::State,
    bytes: &[u8],
    progress: &RequestProgress<S>,
    observer: &Rc<dyn Observer>,
) -> usize {
    let inputs = bytes
        .chunks_exact(size_of::<S::Input>())
        .map(bytemuck::pod_read_unaligned::<S::Input>);
    let mut index = 0;
    crate::exec::for_each_call::<S, _, _>(
        state,
        inputs,
        |state, inputs| {
            progress.call_begins(inputs.len());
            // A call of one task is told of as a whole: its result is written as it ends.
            if inputs.len() == 1 {
                return crate::exec::call_handler::<S>(state, inputs);
            }
            crate::progress::observed(observer, || crate::exec::call_handler::<S>(state, inputs))
        },
        |result| {
            let outcome = match &result {
                Ok(output) => Outcome::Output(bytemuck::bytes_of(output)),
                Err(message) => Outcome::Error(message),
            };
            progress.result(index, outcome);
            index += 1;
        },
    );
    index
}

/// Waits for a request newer than `seen` and returns the newest published, polling as
/// `next_work` says first; `None` when the parent asked the worker to close or is gone.
fn next_request(boot: &Boot, seen: u64, next_work: &mut NextWork) -> Option<u64> {
    let ctl = &boot.ctl;
    let mut spin = next_work.budget();
    loop {
        let header = ctl.header();
        if header.closing.load(Ordering::Acquire) != 0 {
            return None;
        }
        let seq = header.req_seq.load(Ordering::Acquire);
        if seq > seen {
            return Some(seq);
        }
        // Just answered a batch: the next request often follows within microseconds, and
        // catching it here saves a sleep and a wake-up (~10 us each on small VMs). The
        // spin is short and bounded, and happens only right after work.
        if spin_until_request(ctl, seen, spin, spin) {
            continue;
        }
        if !spin.is_zero() {
            next_work.missed();
        }
        spin = Duration::ZERO;
        // The parent expects a request within microseconds (the stage before runs a lone
        // task): poll for it rather than sleep, yielding the core, which the worker of
        // the stage before may share.
        if wire::request_expected(ctl) && !next_work.declines_expected() {
            let caught = spin_until_request(ctl, seen, EXPECTED_POLL, Duration::ZERO);
            next_work.expected_poll_ended(caught);
            wire::decline_expected(ctl, next_work.declines_expected());
            continue;
        }
        // Event count: announce the sleep, then re-check, so a request published (or
        // expected) in between is either seen here or followed by a wake-up.
        header.worker_waiting.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if header.req_seq.load(Ordering::SeqCst) > seen
            || header.closing.load(Ordering::SeqCst) != 0
            || header.expected.load(Ordering::SeqCst) != 0
        {
            header.worker_waiting.store(0, Ordering::SeqCst);
            continue;
        }
        // One blocking read: no timer to arm and no second system call, which is most of
        // what a sleeping worker costs per request when it shares a core with its caller.
        // (An interrupted read just goes round again; the parent is watched elsewhere.)
        boot.req.wait();
        header.worker_waiting.store(0, Ordering::SeqCst);
    }
}

/// Ends this worker if its parent goes and `PR_SET_PDEATHSIG` did not end it first: a
/// thread that looks every [`PARENT_CHECK`], so that the worker's own wait for requests
/// needs no timeout.
fn watch_parent(parent_pid: u32) {
    let watch = std::thread::Builder::new()
        .name("aqueduct-watch".into())
        .spawn(move || loop {
            std::thread::sleep(PARENT_CHECK);
            if process::parent_pid() != parent_pid {
                process::exit_immediately(exit::CLOSED);
            }
        });
    if let Err(error) = watch {
        // The kernel's parent-death signal still ends this worker with its parent.
        eprintln!("aqueduct worker: cannot start the parent watch: {error}");
    }
}

/// Polls up to `budget` for a request newer than `seen`, spinning for the first
/// `spin_for` of it and yielding the core between polls after that. With no budget (one
/// core, or a poll that recently caught nothing) it reads no clock (see [`SpinWait`]).
fn spin_until_request(ctl: &Region, seen: u64, budget: Duration, spin_for: Duration) -> bool {
    let mut wait = SpinWait::new(budget, spin_for);
    while wait.pause() {
        let header = ctl.header();
        if header.req_seq.load(Ordering::Acquire) > seen
            || header.closing.load(Ordering::Acquire) != 0
        {
            return true;
        }
    }
    false
}
