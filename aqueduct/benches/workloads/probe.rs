//! `probe`: one of W1's shapes run alone, round after round, for a profiler to watch
//! (`perf stat`, `perf record`, `perf sched`). W1's own rounds interleave several flows and
//! floors, so a profile of them says little about any one of them. Runs only when named:
//!
//! `cargo bench -p aqueduct --bench workloads -- probe --shape=process3 --rounds=5`
//!
//! Shapes, each printing one `PROBE` line per round:
//! - `process3`, `thread3`: W1's three no-op stages on worker processes or threads;
//!   `process1`: W1's bound, one process stage doing all three; `hand3`: W1's hand-rolled
//!   pipeline. A round is `--calls` calls (200 000) with `--in-flight` (256) outstanding,
//!   driven as W1 drives them; it prints tasks/s, this process's CPU time per task
//!   (the flow's parent side: worker processes are not counted, the hand-rolled
//!   pipeline's threads are) and the whole machine's (every CPU's busy time in
//!   `/proc/stat`, in clock ticks: the workers, the kernel's work for them, and any
//!   other program running meanwhile, such as `--load`'s threads).
//! - `lone3`: a burst of W1's load (50 000 calls, 256 in flight) through the three process
//!   stages, then `--lone` calls (20 000) one after another, in chunks of `--chunk`
//!   (1000); it prints each chunk's p50, so how a lone call fares after a burst, and how
//!   that moves from chunk to chunk, can be seen.
//!
//! `--load N` and `--runtime-threads=N` work as for the workloads (see the bench's doc).

use rustix::time::{clock_gettime, ClockId};

use aqueduct::Flow;

use super::{
    proc_a, proc_abc, proc_b, proc_c, sequential_latency, set_a, set_b, set_c, small, throughput,
    w1_stages, Call, Caller, HandRolled, Load, Small,
};

/// The calls of the burst of load `lone3` makes before its lone calls (W1's).
const BURST: usize = 50_000;
/// W1's calls in flight.
const IN_FLIGHT: usize = 256;
/// Lone calls before the rounds, as W1 makes: every worker started and measured.
const WARM_UP: u64 = 2000;

/// What to run, from the command line's `--name=value` flags.
struct Settings {
    shape: String,
    rounds: usize,
    calls: usize,
    in_flight: usize,
    lone: usize,
    chunk: usize,
}

impl Settings {
    fn from(flags: &[String]) -> Self {
        let value = |name: &str| {
            let prefix = format!("--{name}=");
            flags.iter().find_map(|flag| flag.strip_prefix(&prefix))
        };
        let number = |name: &str, default: usize| {
            value(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--{name} takes a number, not {v:?}"))
            })
        };
        Self {
            shape: value("shape").unwrap_or("process3").to_owned(),
            rounds: number("rounds", 5),
            calls: number("calls", 200_000),
            in_flight: number("in-flight", IN_FLIGHT),
            lone: number("lone", 20_000),
            chunk: number("chunk", 1000).max(1),
        }
    }
}

pub(super) async fn run(flags: &[String], load: usize) {
    let settings = Settings::from(flags);
    let flow = match settings.shape.as_str() {
        "process3" | "lone3" => aqueduct::flow!(proc_a -> proc_b -> proc_c).start().await,
        "thread3" => aqueduct::flow!(set_a -> set_b -> set_c).start().await,
        "process1" => aqueduct::flow!(proc_abc).start().await,
        "hand3" => {
            let pipeline = HandRolled::start(w1_stages());
            return rounds(&pipeline, &settings, load, Vec::new).await;
        }
        other => {
            panic!("probe: unknown --shape={other} (process3, thread3, process1, hand3 or lone3)")
        }
    }
    .expect("the probe's flow did not start");
    if settings.shape == "lone3" {
        lone_after_bursts(&flow, &settings, load).await;
    } else {
        rounds(&flow, &settings, load, || dispatches(&flow)).await;
    }
    flow.stop(true).await;
}

/// Throughput rounds on `target`, with this process's CPU time per task and, for a flow,
/// how many tasks each stage's dispatches carried in the round (`dispatched` reads each
/// stage's running count of tasks and dispatches).
async fn rounds<C: Call<Small>>(
    target: &C,
    settings: &Settings,
    load: usize,
    dispatched: impl Fn() -> Vec<(u64, u64)>,
) {
    warm_up(target).await;
    let _busy = Load::start(load);
    for round in 1..=settings.rounds {
        let (cpu, machine, before) = (process_cpu_seconds(), machine_busy_seconds(), dispatched());
        let rate = throughput(target, settings.calls, settings.in_flight, |i| {
            std::future::ready(small(i as u64))
        })
        .await;
        let cpu_us = (process_cpu_seconds() - cpu) / settings.calls as f64 * 1e6;
        let machine_us = (machine_busy_seconds() - machine) / settings.calls as f64 * 1e6;
        let per_dispatch: Vec<_> = dispatched()
            .iter()
            .zip(&before)
            .map(
                |(&(tasks, dispatches), &(tasks_before, dispatches_before))| {
                    let dispatches = (dispatches - dispatches_before).max(1);
                    format!("{:.1}", (tasks - tasks_before) as f64 / dispatches as f64)
                },
            )
            .collect();
        println!(
            "PROBE shape={} round={round} tasks_per_s={rate:.0} cpu_us_per_task={cpu_us:.2} machine_cpu_us_per_task={machine_us:.2} tasks_per_dispatch={} in_flight={} load={load}",
            settings.shape,
            if per_dispatch.is_empty() { "-".to_owned() } else { per_dispatch.join("/") },
            settings.in_flight
        );
    }
}

/// Each stage's tasks and dispatches so far.
fn dispatches(flow: &Flow<Small, Small>) -> Vec<(u64, u64)> {
    flow.stats()
        .iter()
        .map(|stage| (stage.tasks, stage.dispatches))
        .collect()
}

/// Rounds of a burst, then lone calls in chunks, each chunk's p50 printed.
async fn lone_after_bursts<C: Call<Small>>(target: &C, settings: &Settings, load: usize) {
    warm_up(target).await;
    let _busy = Load::start(load);
    for round in 1..=settings.rounds {
        let rate = throughput(target, BURST, IN_FLIGHT, |i| {
            std::future::ready(small(i as u64))
        })
        .await;
        let mut p50s = Vec::new();
        let mut left = settings.lone;
        while left > 0 {
            let count = left.min(settings.chunk);
            left -= count;
            let (p50, _) = sequential_latency(target, count as u64, Caller::Task, small).await;
            p50s.push(format!("{p50:.1}"));
        }
        println!(
            "PROBE shape={} round={round} burst_tasks_per_s={rate:.0} chunk={} chunk_p50s_us={} load={load}",
            settings.shape,
            settings.chunk,
            p50s.join(",")
        );
    }
}

async fn warm_up<C: Call<Small>>(target: &C) {
    for i in 0..WARM_UP {
        drop(target.call(small(i)).await);
    }
}

/// CPU time this process (all its threads) has used, in seconds.
fn process_cpu_seconds() -> f64 {
    let spent = clock_gettime(ClockId::ProcessCPUTime);
    spent.tv_sec as f64 + spent.tv_nsec as f64 * 1e-9
}

/// Busy time of all the machine's CPUs so far, in seconds: the user, nice, system, irq and
/// softirq columns of `/proc/stat`'s first line, in clock ticks (`USER_HZ`). Not idle, I/O
/// wait, or steal (time the hypervisor gave another guest).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat is readable");
    let cpu = stat.lines().next().expect("/proc/stat has a first line");
    // user nice system idle iowait irq softirq (guest time is within user).
    let busy: u64 = cpu
        .split_whitespace()
        .skip(1)
        .take(7)
        .enumerate()
        .filter(|&(column, _)| column != 3 && column != 4)
        .map(|(_, ticks)| {
            ticks
                .parse::<u64>()
                .expect("/proc/stat's columns are numbers")
        })
        .sum();
    busy as f64 / rustix::param::clock_ticks_per_second() as f64
}
