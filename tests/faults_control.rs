//! The fault suite for the process boundary: a handler writes words of its own worker's
//! control region (as a memory-corruption bug in it could), kills its own process at
//! random points of the protocol, while traffic flows. Whatever it does:
//! - no wrong result is ever delivered as a success (every output is checked);
//! - no task runs twice (`crash_retry = false`: executions are counted per task id in a
//!   file each handler call appends a line to);
//! - every task is answered, and the flow keeps serving afterwards.

use std::path::Path;
use std::time::Duration;

use aqueduct::{Error, ShmStr};

mod execution_log;

/// Every word a stray write may hit: header words, the running lane's, the other lane's
/// (which may hold the next request, or the answer to the previous one), and the first
/// response slot's.
const WORDS: &[&str] = &[
    "req_seq",
    "taken_seq",
    "resp_seq",
    "worker_waiting",
    "state",
    "closing",
    "parent_waiting",
    "tag",
    "check",
    "taken_tag",
    "answer_tag",
    "count",
    "resp_count",
    "other.tag",
    "other.check",
    "other.taken_tag",
    "other.answer_tag",
    "other.count",
    "other.resp_count",
    "slot.stamp",
    "slot.check",
    "slot.status",
    "slot.len",
];

#[aqueduct::task]
#[derive(Debug)]
struct Probe {
    id: u64,
    /// 0: none. 1 + i: write `value` into `WORDS[i]`; from a thread after `delay_ns` of
    /// spinning when `late` is set (so it may land after the answer), else at once.
    /// With `relative`, the value written is the running request's number plus `value`
    /// (wrapping): the plausible values a stray write of a sequence number would have.
    fault: u64,
    value: u64,
    relative: u64,
    delay_ns: u64,
    late: u64,
    /// Non-zero: SIGKILL this worker process after `delay_ns` (from a thread).
    kill: u64,
    out: u64,
    log: ShmStr,
}

fn spin(ns: u64) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_nanos(ns) {
        std::hint::spin_loop();
    }
}

#[aqueduct::handler(nprocs = 2, take_timeout_ms = 300, crash_retry = false)]
fn work(probe: &mut Probe) {
    execution_log::record(&probe.log.view().unwrap(), probe.id);
    if probe.fault != 0 {
        let word = WORDS[(probe.fault - 1) as usize];
        let delay = probe.delay_ns;
        let value = if probe.relative != 0 {
            aqueduct::__private::running_request().wrapping_add(probe.value)
        } else {
            probe.value
        };
        if probe.late != 0 {
            std::thread::spawn(move || {
                spin(delay);
                aqueduct::__private::corrupt_control(word, value);
            });
        } else {
            assert!(aqueduct::__private::corrupt_control(word, value));
        }
    }
    if probe.kill != 0 {
        let delay = probe.delay_ns;
        std::thread::spawn(move || {
            spin(delay);
            // SAFETY: plain syscalls on this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        });
    }
    // About 50 us of work, so that the stage is pipelined (two requests per worker).
    spin(50_000);
    probe.out = probe.id * 3 + 1;
}

/// A small deterministic generator, so a failing run can be reproduced.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn probe(id: u64, log: &Path) -> Probe {
    Probe {
        id,
        fault: 0,
        value: 0,
        relative: 0,
        delay_ns: 0,
        late: 0,
        kill: 0,
        out: 0,
        log: ShmStr::new(log.to_str().unwrap()).unwrap(),
    }
}

/// Runs `probes` through `flow` concurrently, checks every answer, and returns how many
/// failed (with a boundary error).
async fn run_and_check(flow: &aqueduct::Flow<Probe, Probe>, probes: Vec<Probe>) -> usize {
    failed_ids(flow, probes).await.len()
}

/// Like [`run_and_check`], returning the ids of the tasks that failed.
async fn failed_ids(flow: &aqueduct::Flow<Probe, Probe>, probes: Vec<Probe>) -> Vec<u64> {
    let calls: Vec<_> = probes
        .into_iter()
        .map(|probe| {
            let flow = flow.clone();
            let id = probe.id;
            (id, tokio::spawn(async move { flow.process(probe).await }))
        })
        .collect();
    let mut failed = Vec::new();
    for (id, call) in calls {
        match call.await.unwrap() {
            Ok(out) => {
                assert_eq!(out.id, id, "task {id} received another task's result");
                assert_eq!(
                    out.out,
                    id * 3 + 1,
                    "task {id}: a wrong result as a success"
                );
            }
            Err(Error::WorkerCrashed { .. } | Error::WorkerProtocol { .. }) => failed.push(id),
            Err(other) => panic!("task {id}: unexpected error {other}"),
        }
    }
    failed
}

async fn start() -> aqueduct::Flow<Probe, Probe> {
    let flow = aqueduct::flow!(work)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    // Measure the stage first, so that it is pipelined: two requests per worker.
    let warm = execution_log::fresh("warm");
    let probes = (1_000_000..1_000_200).map(|id| probe(id, &warm)).collect();
    assert_eq!(run_and_check(&flow, probes).await, 0);
    let _ = std::fs::remove_file(warm);
    flow
}

async fn still_serving(flow: &aqueduct::Flow<Probe, Probe>) {
    let log = execution_log::fresh("after");
    let probes = (2_000_000..2_000_100).map(|id| probe(id, &log)).collect();
    // The last faulty probe's thread (a kill, or a late write, after up to 100 us of
    // spinning) may still land once its burst was answered, and fail the clean tasks
    // then in flight: failed, never wrong. Sent again, each must succeed.
    let failed = failed_ids(flow, probes).await;
    assert!(
        failed.len() <= 10,
        "the flow keeps serving: {failed:?} failed"
    );
    let again = failed.into_iter().map(|id| probe(id, &log)).collect();
    assert_eq!(
        run_and_check(flow, again).await,
        0,
        "the flow keeps serving"
    );
    let _ = std::fs::remove_file(log);
}

fn assert_at_most_once(log: &Path) {
    for (id, runs) in execution_log::counts(log) {
        assert_eq!(runs, 1, "task {id} ran {runs} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_into_any_control_word_never_misleads_the_parent() {
    let flow = start().await;
    let log = execution_log::fresh("words");
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut id = 0;
    // Absolute values, then the running request's number -2 to +1.
    let values = [
        (0, 0),
        (u64::MAX, 0),
        (0x4f4b, 0),
        (-2i64 as u64, 1),
        (-1i64 as u64, 1),
        (0, 1),
        (1, 1),
    ];
    for (index, _) in WORDS.iter().enumerate() {
        for (value, relative) in values {
            for (late, kill) in [(0, 0), (1, 0), (0, 1)] {
                // A burst of clean tasks around one faulty one, so that the other lane
                // holds a request when the write lands.
                let mut probes: Vec<Probe> = (0..6)
                    .map(|_| {
                        id += 1;
                        probe(id, &log)
                    })
                    .collect();
                let faulty = &mut probes[2];
                faulty.fault = index as u64 + 1;
                faulty.value = value;
                faulty.relative = relative;
                faulty.late = late;
                // Then die: whether the parent sends the batch again rests on what the
                // worker's words say about it.
                faulty.kill = kill;
                faulty.delay_ns = random.next() % 100_000;
                run_and_check(&flow, probes).await;
            }
        }
    }
    assert_at_most_once(&log);
    still_serving(&flow).await;
    flow.stop(true).await;
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_point_of_the_protocol_loses_nothing_and_runs_nothing_twice() {
    let flow = start().await;
    let log = execution_log::fresh("kills");
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    let mut probes = Vec::new();
    for id in 0..600 {
        let mut probe = probe(id, &log);
        if random.next() % 25 == 0 {
            // From mid-handler to well after the answer: before take of the next
            // request, mid-batch, after writing results, between the two lanes.
            probe.kill = 1;
            probe.delay_ns = random.next() % 200_000;
        }
        probes.push(probe);
    }
    let killers = probes.iter().filter(|p| p.kill != 0).count();
    let failed = run_and_check(&flow, probes).await;
    // A kill costs at most the run its worker held and the one queued behind it
    // (runs carry at most 64 tasks).
    assert!(
        failed <= 2 * 64 * killers,
        "{failed} failed for {killers} kills"
    );
    assert_at_most_once(&log);
    still_serving(&flow).await;
    flow.stop(true).await;
    let _ = std::fs::remove_file(log);
}

/// Erases the parent's "about to sleep" announcement once the parent sleeps (after 2 ms;
/// the parent polls for 25 us at most), then answers. The take timeout is long, so that
/// only the parent's backstop can find the answer soon.
#[aqueduct::handler(take_timeout_ms = 60000, crash_retry = false)]
fn erase_parent_sleep(probe: &mut Probe) {
    execution_log::record(&probe.log.view().unwrap(), probe.id);
    spin(2_000_000);
    assert!(aqueduct::__private::corrupt_control("parent_waiting", 0));
    probe.out = probe.id * 3 + 1;
}

/// The worker signals the parent only when the parent announced that it sleeps; a stray
/// write that erases the announcement while the parent sleeps must cost a delay (the
/// parent's backstop re-check), never a wedged stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_write_that_erases_the_parents_sleep_costs_a_delay_not_a_wedge() {
    let flow = aqueduct::flow!(erase_parent_sleep).start().await.unwrap();
    let log = execution_log::fresh("parent_waiting");
    let probes = (0..5).map(|id| probe(id, &log)).collect();
    let answered = tokio::time::timeout(Duration::from_secs(30), run_and_check(&flow, probes));
    assert_eq!(answered.await.expect("every task answered, if late"), 0);
    assert_at_most_once(&log);
    flow.stop(true).await;
    let _ = std::fs::remove_file(log);
}
