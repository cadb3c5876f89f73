//! Workload benchmarks: the framework's own cost per task, batching, payload sizes,
//! scaling over workers, and batching on real arithmetic. Each figure is printed as one
//! `Wn key=value` line, the median of several rounds.
//!
//! Run: `cargo bench -p aqueduct --bench workloads` (under 3 minutes on 2 cores), or name
//! workloads: `cargo bench -p aqueduct --bench workloads -- W1 W6`. W8 (a flow as a
//! `tower::Service` with many clients) needs `--features tower`. W9 feeds a graph processor
//! 10 000 and then 200 000 inputs at once. W10 sends 8 KiB tasks (held inline, not in a
//! payload) through one process stage.
//! Stages run on worker processes (the default) unless a line says `isolation=thread`.
//! `bench/python/compare.sh` runs this and the same workloads on the Python Aqueduct
//! side by side.
//!
//! # Floors
//! W1 and W6 also measure what the same work costs without the framework, in the same
//! rounds, interleaved with aqueduct's own figures (so a ratio compares like with like),
//! and print our figure / floor ratios (`W1 ratios ...`, `W6 ratios ...`; each the median
//! of the per-round ratios):
//! - W6, process isolation: two processes exchanging a 64-byte message through a
//!   memfd-backed shared mapping, woken by eventfds (`W6 floor=eventfd_memfd`). `sleeping`:
//!   each side blocks on its eventfd read. `polling`: the scheme aqueduct's process
//!   executor uses: the caller polls the shared memory for the answer for up to 25 us
//!   (spinning 5 us, then yielding between polls) before sleeping, and the worker, which
//!   sleeps, writes the caller's eventfd only when the caller announced that it sleeps.
//!   The caller is a plain thread; the worker is a child forked at the top of `main`.
//! - W6, thread isolation: a tokio task sends (task, oneshot) through a tokio mpsc channel
//!   to one std thread (`blocking_recv`), which runs the no-op and answers through the
//!   oneshot (`W6 floor=hand_rolled_thread`), one call after another as W6 measures.
//! - W1: the obvious hand-rolled pipeline: tokio mpsc channels and three std threads
//!   running W1's three no-op stages, the last answering through a oneshot, fed with 256
//!   tasks in flight by the same driver as W1's flows (`W1 floor=hand_rolled_pipeline`),
//!   and its lone-call latency, p50 and p99, by the same loop as the flows' (the p99 is
//!   the floor for the tail: with busy threads, both wait out the kernel's time slices).
//! - W1 also measures a bound, not a floor: one process stage whose handler does all three
//!   stages' work (`W1 bound=one_process_stage_for_all_three`). The parent then touches
//!   each task once, as it would if consecutive process stages passed tasks from worker
//!   to worker; so this is the most such a hand-off could give W1 (less the stages'
//!   parallelism, which no-op stages do not need).
//! - W2 `lone_task`: a lone task in a stage whose batches wait 1, 2 or 10 ms to fill
//!   waits out the timeout; the same stage without a timeout, in the same rounds, is the
//!   rest of its latency, so `wait_vs_timeout` is how long it waited over the timeout
//!   (1.00: on time).
//! - W7 `call_timeout`: how long after its 1 or 5 ms timeout a call fails, one call at a
//!   time to an idle stage whose handler outlasts the timeout (`late_vs_timeout`; 1.00:
//!   on time).
//! - W1 also runs rounds with 1024 callers, more than the first stage's default queue
//!   (192) holds, so that most of them wait in line for room, against the same hand-rolled
//!   pipeline with as many callers (`W1 crowd=more_callers_than_queue_room`).
//!
//! `--load N` runs W1's and W6's rounds with N busy threads spinning in the background
//! (started before the rounds, stopped after), so the loaded case (a busy service host) is
//! measured on purpose; those lines then say `load=N`:
//! `cargo bench -p aqueduct --bench workloads -- W1 W6 --load 2`.
//!
//! `--runtime-threads=N` gives the bench's tokio runtime (the drivers' and the flows')
//! N worker threads instead of 2.
//!
//! `-- probe --shape=...` runs one of W1's shapes alone, round after round, for a
//! profiler (see the `probe` module); only when named.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aqueduct::{Error, Flow, ShmBytes, ShmVec, Task};
use memmap2::MmapRaw;
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{memfd_create, MemfdFlags};
use rustix::process::{set_parent_process_death_signal, waitpid, Pid, Signal, WaitOptions};
use tokio::sync::Semaphore;

#[path = "workloads/probe.rs"]
mod probe;

const ROUNDS: usize = 5;
const LONG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- W1 overhead

#[aqueduct::task]
struct Small {
    id: u64,
    a: u64,
    b: u64,
    c: u64,
    _pad: [u64; 4],
}

fn small(id: u64) -> Small {
    Small {
        id,
        a: 0,
        b: 0,
        c: 0,
        _pad: [0; 4],
    }
}

macro_rules! no_op_stages {
    ($isolation:literal: $($name:ident sets $field:ident = $value:literal),*) => {$(
        #[aqueduct::handler(isolation = $isolation)]
        fn $name(task: &mut Small) {
            task.$field = $value;
        }
    )*};
}
no_op_stages!("thread": set_a sets a = 1, set_b sets b = 2, set_c sets c = 3);
no_op_stages!("process": proc_a sets a = 1, proc_b sets b = 2, proc_c sets c = 3);

/// W1's three stages in one process stage (the bound a worker-to-worker hand-off could reach).
#[aqueduct::handler]
fn proc_abc(task: &mut Small) {
    (task.a, task.b, task.c) = (1, 2, 3);
}

/// W1's three stages' work as plain functions, for the hand-rolled pipeline.
fn w1_stages() -> Vec<fn(&mut Small)> {
    vec![|t| t.a = 1, |t| t.b = 2, |t| t.c = 3]
}

// ---------------------------------------------------------------- W2 batching

const IMAGE_COST: Duration = Duration::from_millis(10);

#[aqueduct::task]
struct CatImage {
    pixels: [f32; 3],
    has_cat: u32,
}

fn predict(images: &mut [CatImage]) {
    let cost = if images.len() == 1 {
        IMAGE_COST
    } else {
        IMAGE_COST.mul_f64(images.len() as f64 * 0.7)
    };
    std::thread::sleep(cost);
    images.iter_mut().for_each(|i| i.has_cat = 1);
}

#[aqueduct::handler(batch_size = 20)]
fn cats_dynamic(images: &mut [CatImage]) {
    predict(images);
}
#[aqueduct::handler(batch_size = 20, batch_timeout_ms = 50)]
fn cats_timed(images: &mut [CatImage]) {
    predict(images);
}

/// Stages whose batches wait `batch_timeout_ms` to fill, for a lone task: it waits the
/// whole timeout, and `lone_round_trip`, the same stage without a timeout, is the rest
/// of its latency.
#[aqueduct::handler(batch_size = 20, batch_timeout_ms = 1)]
fn lone_wait_1ms(images: &mut [CatImage]) {
    images.iter_mut().for_each(|i| i.has_cat = 1);
}
#[aqueduct::handler(batch_size = 20, batch_timeout_ms = 2)]
fn lone_wait_2ms(images: &mut [CatImage]) {
    images.iter_mut().for_each(|i| i.has_cat = 1);
}
#[aqueduct::handler(batch_size = 20, batch_timeout_ms = 10)]
fn lone_wait_10ms(images: &mut [CatImage]) {
    images.iter_mut().for_each(|i| i.has_cat = 1);
}
#[aqueduct::handler(batch_size = 20)]
fn lone_round_trip(images: &mut [CatImage]) {
    images.iter_mut().for_each(|i| i.has_cat = 1);
}

/// How long `quick_batch`'s model takes for a batch, whatever its size: a small model on
/// a fast device, where the worker's idle moment between batches is not small next to
/// the batch.
const QUICK_BATCH: Duration = Duration::from_micros(160);

/// A batch of up to 8 in `QUICK_BATCH` (busy, as a device-bound call keeps its thread).
#[aqueduct::handler(batch_size = 8)]
fn quick_batch(images: &mut [CatImage]) {
    let until = Instant::now() + QUICK_BATCH;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    images.iter_mut().for_each(|i| i.has_cat = 1);
}

// ---------------------------------------------------------------- W3 payload

#[aqueduct::task]
struct Payload {
    bytes: ShmBytes,
    last: u64,
}

#[aqueduct::handler]
fn read_last_byte(task: &mut Payload) -> Result<(), Error> {
    task.last = task.bytes.view()?.last().copied().map_or(0, u64::from);
    Ok(())
}

/// Makes a new 10 MiB block inside the worker (a decoded frame, say), which the parent
/// copies into the arena as the answer comes back.
#[aqueduct::handler]
fn make_ten_mib(task: &mut Payload) -> Result<(), Error> {
    let fill = task.last as u8;
    task.bytes = ShmBytes::with_len(10 << 20, |buf| buf.fill(fill))?;
    Ok(())
}

// ---------------------------------------------------------------- W4 scaling

#[aqueduct::task]
struct FibTask {
    n: u64,
    value: u64,
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[aqueduct::handler(nprocs = 1)]
fn fib_1(task: &mut FibTask) {
    task.value = fib(task.n);
}
#[aqueduct::handler(nprocs = 2)]
fn fib_2(task: &mut FibTask) {
    task.value = fib(task.n);
}

// ---------------------------------------------------------------- W5 real batching

const FEATURES: usize = 512;

#[aqueduct::task]
struct Features {
    input: ShmVec<f32>,
    class: u64,
}

/// A 512 -> 512 -> 512 -> 10 dense network with fixed pseudo-random weights.
struct Model {
    layers: Vec<ndarray::Array2<f32>>,
}

fn load_model() -> Model {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 2000) as f32 / 1000.0 - 1.0
    };
    let shapes = [(FEATURES, FEATURES), (FEATURES, FEATURES), (FEATURES, 10)];
    Model {
        layers: shapes
            .iter()
            .map(|&(i, o)| ndarray::Array2::from_shape_fn((i, o), |_| next() / (i as f32).sqrt()))
            .collect(),
    }
}

fn classify(model: &Model, inputs: &[Features]) -> Result<Vec<u64>, Error> {
    let mut batch = ndarray::Array2::<f32>::zeros((inputs.len(), FEATURES));
    for (mut row, task) in batch.rows_mut().into_iter().zip(inputs) {
        row.assign(&ndarray::ArrayView1::from(&*task.input.view()?));
    }
    for (i, layer) in model.layers.iter().enumerate() {
        batch = batch.dot(layer);
        if i + 1 < model.layers.len() {
            batch.mapv_inplace(|x| x.max(0.0));
        }
    }
    Ok(batch
        .rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (j, &x)| if x > best.1 { (j, x) } else { best },
                )
                .0 as u64
        })
        .collect())
}

#[aqueduct::handler(init = load_model, batch_size = 1)]
fn mlp_1(model: &mut Model, tasks: &mut [Features]) -> Result<(), Error> {
    let classes = classify(model, tasks)?;
    tasks.iter_mut().zip(classes).for_each(|(t, c)| t.class = c);
    Ok(())
}
#[aqueduct::handler(init = load_model, batch_size = 32)]
fn mlp_32(model: &mut Model, tasks: &mut [Features]) -> Result<(), Error> {
    let classes = classify(model, tasks)?;
    tasks.iter_mut().zip(classes).for_each(|(t, c)| t.class = c);
    Ok(())
}

// ---------------------------------------------------------------- driving

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What the drivers below call, one task per call: a flow, or a hand-rolled floor of the
/// same shape, so both are measured by the same code.
trait Call<In>: Clone + Send + Sync + 'static {
    type Out: Send;
    fn call(&self, task: In) -> impl Future<Output = Self::Out> + Send;
}

impl<In: Task, Out: Task> Call<In> for Flow<In, Out> {
    type Out = aqueduct::Owned<Out>;
    async fn call(&self, task: In) -> Self::Out {
        self.process_timeout(task, LONG)
            .await
            .expect("benchmark task failed")
    }
}

/// Runs `count` tasks made by `make` with at most `in_flight` outstanding, each call a
/// task of its own as a service's requests would be; tasks/s.
async fn throughput<In: Send + 'static, C: Call<In>, F>(
    target: &C,
    count: usize,
    in_flight: usize,
    make: impl Fn(usize) -> F + Send + 'static,
) -> f64
where
    F: Future<Output = In> + Send + 'static,
{
    let target = target.clone();
    // The driver itself runs on the runtime, like a server's accept loop.
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(in_flight));
        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..count {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let target = target.clone();
            let task = make(i);
            calls.spawn(async move {
                let out = target.call(task.await).await;
                drop(permit);
                drop(out);
            });
        }
        while calls.join_next().await.is_some() {}
        count as f64 / started.elapsed().as_secs_f64()
    })
    .await
    .expect("benchmark driver failed")
}

/// W1: three no-op stages on threads, on processes, and hand-rolled (the floor), measured
/// in the same rounds, one after the other within each round.
async fn w1(load: usize) {
    let thread = aqueduct::flow!(set_a -> set_b -> set_c)
        .start()
        .await
        .unwrap();
    let process = aqueduct::flow!(proc_a -> proc_b -> proc_c)
        .start()
        .await
        .unwrap();
    let one_stage = aqueduct::flow!(proc_abc).start().await.unwrap();
    let hand_rolled = HandRolled::start(w1_stages());
    for i in 0..2000 {
        thread.call(small(i)).await;
        process.call(small(i)).await;
        one_stage.call(small(i)).await;
        hand_rolled.call(small(i)).await;
    }
    let busy = Load::start(load);
    let (mut on_threads, mut on_processes) = (W1Figures::default(), W1Figures::default());
    let (mut floor_rates, mut floor_p50s, mut floor_p99s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut process_ratios, mut thread_ratios) = (Vec::new(), Vec::new());
    let (mut bound_rates, mut bound_ratios) = (Vec::new(), Vec::new());
    let (mut crowd_rates, mut crowd_floors, mut crowd_ratios) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let thread_rate = on_threads.round(&thread).await;
        let process_rate = on_processes.round(&process).await;
        let bound_rate = throughput(&one_stage, 50_000, 256, |i| {
            std::future::ready(small(i as u64))
        })
        .await;
        let floor_rate = throughput(&hand_rolled, 50_000, 256, |i| {
            std::future::ready(small(i as u64))
        })
        .await;
        floor_rates.push(floor_rate);
        let (floor_p50, floor_p99) =
            sequential_latency(&hand_rolled, 5000, Caller::Task, small).await;
        floor_p50s.push(floor_p50);
        floor_p99s.push(floor_p99);
        process_ratios.push(process_rate / floor_rate);
        thread_ratios.push(thread_rate / floor_rate);
        bound_rates.push(bound_rate);
        bound_ratios.push((bound_rate / process_rate, bound_rate / floor_rate));
        // More callers than the first stage's queue holds (192 by default): most wait
        // in line for room.
        let crowd_rate = throughput(&process, 50_000, CROWD, |i| {
            std::future::ready(small(i as u64))
        })
        .await;
        let crowd_floor = throughput(&hand_rolled, 50_000, CROWD, |i| {
            std::future::ready(small(i as u64))
        })
        .await;
        crowd_rates.push(crowd_rate);
        crowd_floors.push(crowd_floor);
        crowd_ratios.push(crowd_rate / crowd_floor);
    }
    drop(busy);
    on_threads.print("thread", load);
    on_processes.print("process", load);
    println!(
        "W1 floor=hand_rolled_pipeline threads=3 in_flight=256 handrolled_tasks_per_s={:.0} handrolled_latency_p50_us={:.1} handrolled_latency_p99_us={:.1} load={load}",
        median(floor_rates),
        median(floor_p50s),
        median(floor_p99s)
    );
    println!(
        "W1 ratios ratio_process_vs_handrolled_pipeline={:.2} ratio_thread_vs_handrolled_pipeline={:.2} load={load}",
        median(process_ratios),
        median(thread_ratios)
    );
    let (vs_process, vs_floor): (Vec<f64>, Vec<f64>) = bound_ratios.into_iter().unzip();
    println!(
        "W1 bound=one_process_stage_for_all_three in_flight=256 tasks_per_s={:.0} ratio_vs_three_process_stages={:.2} ratio_vs_handrolled_pipeline={:.2} load={load}",
        median(bound_rates),
        median(vs_process),
        median(vs_floor)
    );
    println!(
        "W1 crowd=more_callers_than_queue_room isolation=process in_flight={CROWD} tasks_per_s={:.0} handrolled_tasks_per_s={:.0} ratio_process_vs_handrolled_pipeline={:.2} load={load}",
        median(crowd_rates),
        median(crowd_floors),
        median(crowd_ratios)
    );
    thread.stop(true).await;
    process.stop(true).await;
    one_stage.stop(true).await;
}

/// W1's callers in its crowd rounds: more than the first stage's default queue (192
/// tasks) holds, so that most of them wait in line for room, as a busy service's do.
const CROWD: usize = 1024;

/// One W1 flow's figures, a value per round.
#[derive(Default)]
struct W1Figures {
    rates: Vec<f64>,
    p50s: Vec<f64>,
    p99s: Vec<f64>,
    main_p50s: Vec<f64>,
}

impl W1Figures {
    /// Measures one round on `flow`; its throughput.
    async fn round(&mut self, flow: &Flow<Small, Small>) -> f64 {
        let rate = throughput(flow, 50_000, 256, |i| std::future::ready(small(i as u64))).await;
        self.rates.push(rate);
        let (p50, p99) = sequential_latency(flow, 5000, Caller::Task, small).await;
        self.p50s.push(p50);
        self.p99s.push(p99);
        self.main_p50s.push(
            sequential_latency(flow, 5000, Caller::BlockOn, small)
                .await
                .0,
        );
        rate
    }

    fn print(self, isolation: &str, load: usize) {
        let rate = median(self.rates);
        println!(
            "W1 isolation={isolation} stages=3 tasks_per_s={rate:.0} latency_p50_us={:.1} latency_p99_us={:.1} block_on_latency_p50_us={:.1} cost_per_task_per_stage_us={:.2} load={load}",
            median(self.p50s),
            median(self.p99s),
            median(self.main_p50s),
            1e6 / rate / 3.0
        );
    }
}

/// Where a latency loop calls `process` from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A task on the runtime, as a service's request handler is.
    Task,
    /// The thread that entered the runtime with `block_on`, as the body of
    /// `#[tokio::main]` is: each call then also costs a wake-up of a runtime thread and
    /// one back, because that thread is not one of the runtime's workers.
    BlockOn,
}

/// p50 and p99, in microseconds, of `count` round trips made one after another.
async fn sequential_latency<In: Send + 'static, C: Call<In>>(
    target: &C,
    count: u64,
    caller: Caller,
    make: impl Fn(u64) -> In + Send + 'static,
) -> (f64, f64) {
    let target = target.clone();
    let calls = async move {
        let mut latencies = Vec::with_capacity(count as usize);
        for i in 0..count {
            let task = make(i);
            let started = Instant::now();
            let out = target.call(task).await;
            latencies.push(started.elapsed().as_secs_f64() * 1e6);
            drop(out);
        }
        latencies.sort_by(f64::total_cmp);
        (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
    };
    match caller {
        Caller::Task => tokio::spawn(calls).await.expect("latency loop failed"),
        Caller::BlockOn => calls.await,
    }
}

async fn w2() {
    const IDEAL: f64 = 1.0 / (0.010 * 0.7);
    for (label, flow) in [
        ("0", aqueduct::flow!(cats_dynamic).start().await.unwrap()),
        ("50", aqueduct::flow!(cats_timed).start().await.unwrap()),
    ] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(
                throughput(&flow, 2000, 200, |i| {
                    std::future::ready(CatImage {
                        pixels: [i as f32, 2.0, 3.0],
                        has_cat: 0,
                    })
                })
                .await,
            );
        }
        let rate = median(rates);
        let batch = flow.stats()[0].mean_batch_size();
        println!("W2 batch_timeout_ms={label} batch_size=20 tasks_per_s={rate:.1} mean_batch_size={batch:.1} efficiency_pct={:.1}", 100.0 * rate / IDEAL);
        flow.stop(true).await;
    }
    // Short batches: the ideal is one full batch per `QUICK_BATCH`, back to back.
    let quick = aqueduct::flow!(quick_batch).start().await.unwrap();
    let ideal = 8.0 / QUICK_BATCH.as_secs_f64();
    let make = |i: usize| {
        std::future::ready(CatImage {
            pixels: [i as f32, 2.0, 3.0],
            has_cat: 0,
        })
    };
    throughput(&quick, 2000, 200, make).await;
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        rates.push(throughput(&quick, 20_000, 200, make).await);
    }
    let rate = median(rates);
    let batch = quick.stats()[0].mean_batch_size();
    println!(
        "W2 batch_us=160 batch_size=8 tasks_per_s={rate:.0} mean_batch_size={batch:.1} efficiency_pct={:.1}",
        100.0 * rate / ideal
    );
    quick.stop(true).await;
    lone_batch_waits().await;
}

/// A lone task in a stage of timed batches waits out the timeout: how much longer than
/// the timeout it waits (`wait_vs_timeout`; 1.0 is on time), sequential calls, with the
/// same stage's round trip without a timeout as the floor, measured in the same rounds.
async fn lone_batch_waits() {
    let image = |i: u64| CatImage {
        pixels: [i as f32, 2.0, 3.0],
        has_cat: 0,
    };
    let floor = aqueduct::flow!(lone_round_trip).start().await.unwrap();
    for (timeout_ms, flow, calls) in [
        (
            1,
            aqueduct::flow!(lone_wait_1ms).start().await.unwrap(),
            400,
        ),
        (
            2,
            aqueduct::flow!(lone_wait_2ms).start().await.unwrap(),
            200,
        ),
        (
            10,
            aqueduct::flow!(lone_wait_10ms).start().await.unwrap(),
            60,
        ),
    ] {
        let (mut waits, mut floors) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            floors.push(
                sequential_latency(&floor, 2000, Caller::Task, image)
                    .await
                    .0,
            );
            waits.push(
                sequential_latency(&flow, calls, Caller::Task, image)
                    .await
                    .0,
            );
        }
        let (latency, round_trip) = (median(waits), median(floors));
        let waited_us = latency - round_trip;
        println!(
            "W2 lone_task batch_timeout_ms={timeout_ms} latency_p50_us={latency:.0} round_trip_p50_us={round_trip:.1} waited_us={waited_us:.0} wait_vs_timeout={:.2}",
            waited_us / (timeout_ms as f64 * 1000.0)
        );
        flow.stop(true).await;
    }
    floor.stop(true).await;
}

async fn w3() {
    let flow = aqueduct::flow!(read_last_byte).start().await.unwrap();
    for (label, size, count) in [
        ("1KB", 1 << 10, 20_000),
        ("100KB", 100 << 10, 5000),
        ("1MB", 1 << 20, 1000),
        ("10MB", 10 << 20, 200),
    ] {
        let mut rates = Vec::new();
        for _ in 0..ROUNDS {
            rates.push(
                throughput(&flow, count, 32, move |i| async move {
                    // The caller writes each task's bytes once, into fresh shared memory, as a
                    // service receiving a request body would.
                    let bytes = ShmBytes::with_len(size, |buf| buf.fill(i as u8)).unwrap();
                    Payload { bytes, last: 0 }
                })
                .await,
            );
        }
        let rate = median(rates);
        println!(
            "W3 size={label} tasks_per_s={rate:.0} mb_per_s={:.0}",
            rate * size as f64 / 1e6
        );
    }
    flow.stop(true).await;

    // Blocks made in the worker: the parent copies each into the arena. Meanwhile a task
    // on the same runtime measures how long a `yield_now` takes to come back, against
    // the same measure on the idle runtime: the copies must not hold the runtime up.
    let made = aqueduct::flow!(make_ten_mib).start().await.unwrap();
    let make = |i: usize| {
        std::future::ready(Payload {
            bytes: ShmBytes::default(),
            last: i as u64,
        })
    };
    throughput(&made, 16, 16, make).await;
    let idle = YieldGaps::start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_p99, _) = idle.stop().await;
    let gaps = YieldGaps::start();
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        rates.push(throughput(&made, 100, 16, make).await);
    }
    let (p99, worst) = gaps.stop().await;
    println!(
        "W3 made_in_worker=10MB in_flight=16 tasks_per_s={:.0} runtime_yield_p99_us={p99:.0} runtime_yield_max_us={worst:.0} idle_runtime_yield_p99_us={idle_p99:.0}",
        median(rates)
    );
    made.stop(true).await;
}

/// A task that yields to the runtime every 200 us and times how long each `yield_now`
/// takes to come back: how long other tasks hold the runtime's threads.
struct YieldGaps {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<f64>>,
}

impl YieldGaps {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut gaps = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let yielded = Instant::now();
                tokio::task::yield_now().await;
                gaps.push(yielded.elapsed().as_secs_f64() * 1e6);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            gaps
        });
        Self { stop, task }
    }

    /// The p99 and the longest gap, in microseconds.
    async fn stop(self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut gaps = self.task.await.expect("yield timer failed");
        gaps.sort_by(f64::total_cmp);
        (percentile(&gaps, 0.99), gaps.last().copied().unwrap_or(0.0))
    }
}

async fn w4() {
    let one = aqueduct::flow!(fib_1).start().await.unwrap();
    let two = aqueduct::flow!(fib_2).start().await.unwrap();
    // fib(25) is the shared workload (about 0.3 ms here, 15 ms in Python); fib(30) shows
    // scaling when the per-task work dwarfs the fixed hand-off cost, as Python's does.
    //
    // A 2-core VM does not always give two cores' worth of work: the same round also
    // runs the tasks on two bare threads against one, which is the most any framework
    // could get at that moment (`bare_threads_ratio`). Each round measures one worker
    // then two, back to back, and the ratios are medians of those pairs, so drift
    // between rounds cancels out.
    for (n, count) in [(25, 2000), (30, 300)] {
        let (mut r1, mut r2, mut ratios, mut bare) = (vec![], vec![], vec![], vec![]);
        for _ in 0..7 {
            let make = move |_| std::future::ready(FibTask { n, value: 0 });
            let single = throughput(&one, count, 64, make).await;
            let double = throughput(&two, count, 64, make).await;
            r1.push(single);
            r2.push(double);
            ratios.push(double / single);
            bare.push(bare_threads(n, count, 2).await / bare_threads(n, count, 1).await);
        }
        println!(
            "W4 isolation=process fib={n} nprocs1_tasks_per_s={:.0} nprocs2_tasks_per_s={:.0} ratio={:.2} bare_threads_ratio={:.2}",
            median(r1),
            median(r2),
            median(ratios),
            median(bare)
        );
    }
}

/// Tasks/s of `count` fib(`n`) calls shared by `threads` plain threads: the machine's
/// own scaling, with no framework in the way.
async fn bare_threads(n: u64, count: usize, threads: usize) -> f64 {
    tokio::task::spawn_blocking(move || {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                        std::hint::black_box(fib(std::hint::black_box(n)));
                    }
                });
            }
        });
        count as f64 / started.elapsed().as_secs_f64()
    })
    .await
    .expect("bare threads failed")
}

async fn w5() {
    let inputs: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            (0..FEATURES)
                .map(|j| ((i * 31 + j * 7) % 100) as f32 / 100.0)
                .collect()
        })
        .collect();
    let inputs = Arc::new(inputs);
    let one = aqueduct::flow!(mlp_1).start().await.unwrap();
    let batched = aqueduct::flow!(mlp_32).start().await.unwrap();
    let make = |inputs: Arc<Vec<Vec<f32>>>| {
        move |i: usize| {
            std::future::ready(Features {
                input: ShmVec::from_slice(&inputs[i % 64]).unwrap(),
                class: 0,
            })
        }
    };
    let (mut r1, mut r32) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        r1.push(throughput(&one, 3000, 128, make(inputs.clone())).await);
        r32.push(throughput(&batched, 3000, 128, make(inputs.clone())).await);
    }
    let (r1, r32) = (median(r1), median(r32));
    println!("W5 model=mlp512x3 batch1_tasks_per_s={r1:.0} batch32_tasks_per_s={r32:.0} ratio={:.2} mean_batch_size={:.1}", r32 / r1, batched.stats()[0].mean_batch_size());
}

// ---------------------------------------------------------------- W6 hand-off

#[aqueduct::task]
struct Tiny {
    id: u64,
    data: [u64; 7],
}

#[aqueduct::handler]
fn echo(task: &mut Tiny) {
    task.data[0] = task.id;
}

#[aqueduct::handler(isolation = "thread")]
fn echo_thread(task: &mut Tiny) {
    task.data[0] = task.id;
}

/// One 64-byte task through one stage and back, one at a time; and the same with a
/// payload that is already in shared memory, 1 KB vs 10 MB: the hand-off copies no
/// payload, so its cost should not grow with the payload.
async fn w6(load: usize, floor: Arc<PingPong>) {
    let process = aqueduct::flow!(echo).start().await.unwrap();
    let thread = aqueduct::flow!(echo_thread).start().await.unwrap();
    let stages: Vec<fn(&mut Tiny)> = vec![|t| t.data[0] = t.id];
    let hand_rolled = HandRolled::start(stages);
    let tiny = |i| Tiny {
        id: i,
        data: [0; 7],
    };
    sequential_latency(&process, 2000, Caller::Task, tiny).await;
    sequential_latency(&thread, 2000, Caller::Task, tiny).await;
    sequential_latency(&hand_rolled, 2000, Caller::Task, tiny).await;
    floor_latency(&floor, 2000, QUIET_SPIN).await;
    let busy = Load::start(load);
    let (mut on_processes, mut on_threads) = (W6Figures::default(), W6Figures::default());
    let (mut hand, mut polling, mut sleeping) = (
        W6Figures::default(),
        W6Figures::default(),
        W6Figures::default(),
    );
    let (mut vs_polling, mut vs_sleeping, mut vs_hand) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let process_p50 = on_processes.round(&process, tiny).await;
        let thread_p50 = on_threads.round(&thread, tiny).await;
        let hand_p50 =
            hand.push(sequential_latency(&hand_rolled, 20_000, Caller::Task, tiny).await);
        let polling_p50 = polling.push(floor_latency(&floor, 20_000, QUIET_SPIN).await);
        let sleeping_p50 = sleeping.push(floor_latency(&floor, 20_000, Duration::ZERO).await);
        vs_polling.push(process_p50 / polling_p50);
        vs_sleeping.push(process_p50 / sleeping_p50);
        vs_hand.push(thread_p50 / hand_p50);
    }
    drop(busy);
    for (isolation, figures) in [("process", on_processes), ("thread", on_threads)] {
        println!("W6 isolation={isolation} task_bytes=64 round_trip_p50_us={:.1} round_trip_p99_us={:.1} block_on_round_trip_p50_us={:.1} load={load}", median(figures.p50s), median(figures.p99s), median(figures.main_p50s));
    }
    println!(
        "W6 floor=eventfd_memfd task_bytes=64 polling_p50_us={:.1} polling_p99_us={:.1} sleeping_p50_us={:.1} sleeping_p99_us={:.1} load={load}",
        median(polling.p50s),
        median(polling.p99s),
        median(sleeping.p50s),
        median(sleeping.p99s)
    );
    println!(
        "W6 floor=hand_rolled_thread task_bytes=64 handrolled_p50_us={:.1} handrolled_p99_us={:.1} load={load}",
        median(hand.p50s),
        median(hand.p99s)
    );
    println!(
        "W6 ratios ratio_process_vs_polling_floor={:.2} ratio_process_vs_sleeping_floor={:.2} ratio_thread_vs_handrolled_thread={:.2} load={load}",
        median(vs_polling),
        median(vs_sleeping),
        median(vs_hand)
    );
    process.stop(true).await;
    thread.stop(true).await;
    drop(hand_rolled);

    let flow = aqueduct::flow!(read_last_byte).start().await.unwrap();
    let mut p50 = Vec::new();
    for size in [1usize << 10, 10 << 20] {
        let bytes = ShmBytes::with_len(size, |buf| buf.fill(7)).unwrap();
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            // Each round trip lends the same pre-filled block (a fresh reference per task).
            rounds.push(
                sequential_latency(&flow, 5000, Caller::Task, move |_| Payload {
                    bytes: bytes.clone_ref().unwrap(),
                    last: 0,
                })
                .await
                .0,
            );
        }
        p50.push(median(rounds));
        drop(aqueduct::Owned::new(Payload { bytes, last: 0 }));
    }
    println!(
        "W6 isolation=process handoff_1KB_p50_us={:.1} handoff_10MB_p50_us={:.1} ratio={:.2}",
        p50[0],
        p50[1],
        p50[1] / p50[0]
    );
}

/// One W6 round-trip loop's figures, a value per round.
#[derive(Default)]
struct W6Figures {
    p50s: Vec<f64>,
    p99s: Vec<f64>,
    main_p50s: Vec<f64>,
}

impl W6Figures {
    /// Records one round's p50 and p99; the p50.
    fn push(&mut self, (p50, p99): (f64, f64)) -> f64 {
        self.p50s.push(p50);
        self.p99s.push(p99);
        p50
    }

    /// Measures one round on `flow`, called from a task and from `block_on`; the task's p50.
    async fn round(&mut self, flow: &Flow<Tiny, Tiny>, tiny: fn(u64) -> Tiny) -> f64 {
        let p50 = self.push(sequential_latency(flow, 20_000, Caller::Task, tiny).await);
        self.main_p50s.push(
            sequential_latency(flow, 20_000, Caller::BlockOn, tiny)
                .await
                .0,
        );
        p50
    }
}

// ---------------------------------------------------------------- W7 overload

/// A stage with a fixed 1 ms cost per task: about 1000 tasks/s on its one worker.
#[aqueduct::handler]
fn one_ms(task: &mut Small) {
    let until = std::time::Instant::now() + Duration::from_millis(1);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    task.a = 1;
}

/// Offers 10x `one_ms`'s capacity (10 000 tasks/s for 2 s, open loop, 1 s timeout)
/// and reports what became of the tasks: completed, turned away (Overloaded, and how
/// fast), expired after admission (Timeout), and the share of admitted tasks that
/// completed.
async fn w7_flow(mode: &str, flow: Flow<Small, Small>) {
    const RATE_PER_MS: usize = 10;
    const MILLIS: usize = 2000;
    const TIMEOUT: Duration = Duration::from_secs(1);
    for i in 0..200 {
        flow.process(small(i)).await.unwrap();
    }
    let outcomes = tokio::spawn({
        let flow = flow.clone();
        async move {
            let mut calls = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            for ms in 0..MILLIS {
                tick.tick().await;
                for k in 0..RATE_PER_MS {
                    let flow = flow.clone();
                    let task = small((ms * RATE_PER_MS + k) as u64);
                    calls.spawn(async move {
                        let started = Instant::now();
                        let outcome = flow.process_timeout(task, TIMEOUT).await.map(|_| ());
                        (outcome, started.elapsed())
                    });
                }
            }
            calls.join_all().await
        }
    })
    .await
    .unwrap();
    let (mut ok, mut expired, mut other) = (0usize, 0usize, 0usize);
    let mut refused_ms = Vec::new();
    for (outcome, took) in &outcomes {
        match outcome {
            Ok(()) => ok += 1,
            Err(Error::Overloaded { .. }) => refused_ms.push(took.as_secs_f64() * 1e3),
            Err(Error::Timeout { .. }) => expired += 1,
            Err(_) => other += 1,
        }
    }
    refused_ms.sort_by(f64::total_cmp);
    let refused_p50 = if refused_ms.is_empty() {
        0.0
    } else {
        percentile(&refused_ms, 0.5)
    };
    println!(
        "W7 mode={mode} offered={} ok={ok} overloaded={} expired={expired} other={other} overloaded_p50_ms={refused_p50:.1} admitted_completed_pct={:.1}",
        outcomes.len(),
        refused_ms.len(),
        100.0 * ok as f64 / (ok + expired).max(1) as f64
    );
    flow.stop(true).await;
}

async fn w7() {
    w7_flow("wait", aqueduct::flow!(one_ms).start().await.unwrap()).await;
    w7_flow(
        "max_wait_50ms",
        aqueduct::flow!(one_ms)
            .max_queue_wait(Duration::from_millis(50))
            .start()
            .await
            .unwrap(),
    )
    .await;
    w7_flow(
        "reject",
        aqueduct::flow!(one_ms)
            .reject_when_full()
            .start()
            .await
            .unwrap(),
    )
    .await;
    call_timeouts().await;
}

/// Longer than any timeout `call_timeouts` sets, so that every call times out.
#[aqueduct::handler]
fn twenty_ms(task: &mut Small) {
    std::thread::sleep(Duration::from_millis(20));
    task.a = 1;
}

/// How long after its timeout a call fails with `Error::Timeout` (`late_vs_timeout`:
/// 1.00 is on time), one call at a time to an idle stage whose handler outlasts the
/// timeout, each call starting at a different point of the millisecond.
async fn call_timeouts() {
    let flow = aqueduct::flow!(twenty_ms).start().await.unwrap();
    for timeout_ms in [1u64, 5] {
        let timeout = Duration::from_millis(timeout_ms);
        let mut failed_after = Vec::new();
        for i in 0..100u64 {
            // The previous call's handler is done: a call to a busy stage that cannot
            // be served in time is turned away at once (`Overloaded`), not timed out.
            tokio::time::sleep(Duration::from_millis(22)).await;
            // Spread over the millisecond: deadlines are kept in millisecond ticks.
            let start = Instant::now() + Duration::from_micros(i * 137 % 1000);
            while Instant::now() < start {
                std::hint::spin_loop();
            }
            let started = Instant::now();
            let outcome = flow.process_timeout(small(i), timeout).await;
            failed_after.push(started.elapsed().as_secs_f64() * 1e6);
            assert!(
                matches!(outcome, Err(aqueduct::Error::Timeout { .. })),
                "{outcome:?}"
            );
        }
        failed_after.sort_by(f64::total_cmp);
        let (p50, p99) = (
            percentile(&failed_after, 0.5),
            percentile(&failed_after, 0.99),
        );
        println!(
            "W7 call_timeout_ms={timeout_ms} failed_after_p50_us={p50:.0} failed_after_p99_us={p99:.0} late_vs_timeout={:.2}",
            p50 / (timeout_ms as f64 * 1000.0)
        );
    }
    flow.stop(false).await;
}

// ---------------------------------------------------------------- W8 readiness

/// W8 (`--features tower`): clients each holding a clone of a one-stage flow as a
/// `tower::Service`, each calling `ready` then `call` in a loop, against as many clients
/// calling `process` in a loop, in the same rounds. With more clients than the first
/// queue holds (192), most wait for readiness.
#[cfg(feature = "tower")]
async fn w8() {
    use tower_service::Service;
    let flow = aqueduct::flow!(proc_a).start().await.unwrap();
    for clients in [64usize, 1024, 4096] {
        let per_client = 200_000 / clients as u64;
        let (mut plain, mut ready, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let mut rates = [0.0; 2];
            for (rate, tower) in rates.iter_mut().zip([false, true]) {
                let started = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                for client in 0..clients as u64 {
                    let flow = flow.clone();
                    set.spawn(async move {
                        let mut service = flow.clone().into_service();
                        for i in 0..per_client {
                            let task = small(client * per_client + i);
                            if tower {
                                std::future::poll_fn(|cx| service.poll_ready(cx))
                                    .await
                                    .unwrap();
                                service.call(task).await.unwrap();
                            } else {
                                flow.process(task).await.unwrap();
                            }
                        }
                    });
                }
                while set.join_next().await.is_some() {}
                *rate = (per_client * clients as u64) as f64 / started.elapsed().as_secs_f64();
            }
            plain.push(rates[0]);
            ready.push(rates[1]);
            ratios.push(rates[1] / rates[0]);
        }
        println!(
            "W8 clients={clients} process_calls_per_s={:.0} tower_calls_per_s={:.0} ratio_tower_vs_process={:.2}",
            median(plain),
            median(ready),
            median(ratios)
        );
    }
    flow.stop(true).await;
}

// ---------------------------------------------------------------- W9 graph feed

/// W9's processor: a batching process stage doing next to nothing.
#[aqueduct::handler(batch_size = 16)]
fn graph_inc(task: &mut Small) {
    task.a += 1;
}

/// W9: the time per input of a processor fed a large batch at once, against a small
/// one, in the same rounds: the cost of an input must not grow with the inputs waiting
/// behind it.
async fn w9() {
    use aqueduct::graph::Processor;
    let processor = Processor::of::<graph_inc>().start().await.unwrap();
    let per_input_us = |inputs: u64| {
        let processor = &processor;
        async move {
            let started = Instant::now();
            processor.feed_all((0..inputs).map(small)).unwrap();
            let mut done = 0;
            while done < inputs {
                done += processor.take_ready().len() as u64;
                if done < inputs && processor.next().await.is_some() {
                    done += 1;
                }
            }
            started.elapsed().as_secs_f64() * 1e6 / inputs as f64
        }
    };
    let (mut small_feeds, mut large_feeds, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let small_feed = per_input_us(10_000).await;
        let large_feed = per_input_us(200_000).await;
        small_feeds.push(small_feed);
        large_feeds.push(large_feed);
        ratios.push(large_feed / small_feed);
    }
    println!(
        "W9 processor_feed small_inputs=10000 us_per_input={:.2} large_inputs=200000 us_per_input={:.2} ratio_large_vs_small={:.2}",
        median(small_feeds),
        median(large_feeds),
        median(ratios)
    );
    processor.stop(true).await;
}

// ---------------------------------------------------------------- W10 large tasks

/// A task of 8 KiB held inline (a feature vector of 2048 `f32`, say), not in a payload.
#[aqueduct::task]
struct Wide {
    id: u64,
    values: [u64; 1023],
}

#[aqueduct::handler]
fn widen(task: &mut Wide) {
    task.values[0] = task.id;
}

fn wide(id: u64) -> Wide {
    Wide {
        id,
        values: [0; 1023],
    }
}

/// W10: 8 KiB tasks through one process stage with 256 in flight, against the hand-rolled
/// pipeline (one thread stage) moving the same tasks, in the same rounds. Each task is
/// written into the worker's ring and read back, with a checksum each way: the cost per
/// byte must stay close to the copies the hand-rolled pipeline makes anyway.
async fn w10() {
    let flow = aqueduct::flow!(widen).start().await.unwrap();
    let stages: Vec<fn(&mut Wide)> = vec![|task| task.values[0] = task.id];
    let hand_rolled = HandRolled::start(stages);
    let make = |i: usize| std::future::ready(wide(i as u64));
    throughput(&flow, 2_000, 256, make).await;
    throughput(&hand_rolled, 2_000, 256, make).await;
    let (mut ours, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let rate = throughput(&flow, 20_000, 256, make).await;
        let floor = throughput(&hand_rolled, 20_000, 256, make).await;
        ours.push(rate);
        floors.push(floor);
        ratios.push(rate / floor);
    }
    println!(
        "W10 task_bytes=8192 in_flight=256 tasks_per_s={:.0} handrolled_tasks_per_s={:.0} ratio_process_vs_handrolled_pipeline={:.2}",
        median(ours),
        median(floors),
        median(ratios)
    );
    flow.stop(true).await;
}

// ---------------------------------------------------------------- floors

/// `--load N`: N threads spinning until dropped, so W1's and W6's rounds run on a busy
/// machine on purpose.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|i| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = i as u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..1000 {
                            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("a load thread panicked");
        }
    }
}

type Reply<T> = tokio::sync::oneshot::Sender<T>;

/// The obvious hand-rolled pipeline, the in-process floor: one std thread per stage,
/// tokio mpsc channels between them (the caller sends with `send().await`, the threads
/// use `blocking_recv`/`blocking_send`), and the last stage answers through the call's
/// oneshot. The threads end when every handle is dropped.
struct HandRolled<T> {
    first: tokio::sync::mpsc::Sender<(T, Reply<T>)>,
}

impl<T> Clone for HandRolled<T> {
    fn clone(&self) -> Self {
        Self {
            first: self.first.clone(),
        }
    }
}

impl<T: Send + 'static> HandRolled<T> {
    fn start(stages: Vec<fn(&mut T)>) -> Self {
        // Roomier than the 256 tasks W1 keeps in flight: no caller ever waits for room.
        const QUEUE: usize = 1024;
        let mut next: Option<tokio::sync::mpsc::Sender<(T, Reply<T>)>> = None;
        for stage in stages.into_iter().rev() {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(T, Reply<T>)>(QUEUE);
            let downstream = next.take();
            std::thread::spawn(move || {
                while let Some((mut task, reply)) = rx.blocking_recv() {
                    stage(&mut task);
                    match &downstream {
                        Some(downstream) => {
                            if downstream.blocking_send((task, reply)).is_err() {
                                return;
                            }
                        }
                        None => drop(reply.send(task)),
                    }
                }
            });
            next = Some(tx);
        }
        Self {
            first: next.expect("a pipeline has at least one stage"),
        }
    }
}

impl<T: Send + 'static> Call<T> for HandRolled<T> {
    type Out = T;
    async fn call(&self, task: T) -> T {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.first
            .send((task, reply))
            .await
            .expect("hand-rolled stage gone");
        answer.await.expect("hand-rolled stage dropped a task")
    }
}

/// How long the polling floor's caller polls for the answer before sleeping: the process
/// executor's own budget (`QUIET_SPIN`), spinning for the first `PURE_SPIN` and yielding
/// the core between polls after that, as its `poll_within` does.
const QUIET_SPIN: Duration = Duration::from_micros(25);
const PURE_SPIN: Duration = Duration::from_micros(5);

/// A word (or the message) on its own cache line, so the two processes' writes do not
/// share lines.
#[repr(C, align(64))]
struct Line<T>(T);

/// The floor's shared page. Each word is written by one side only, except the waiting
/// flags, which the waiting side sets and the waking side clears. Everything is atomic, so
/// neither process ever reads memory the other writes non-atomically.
#[repr(C)]
struct Shared {
    /// Caller: the number of the last request written to `request` (from 1).
    req_seq: Line<AtomicU64>,
    /// Worker: the number of the last request answered in `response`.
    resp_seq: Line<AtomicU64>,
    /// Set by the worker before it sleeps; the caller writes the worker's eventfd only then.
    worker_waiting: Line<AtomicU32>,
    /// Set by the caller before it sleeps; the worker writes the caller's eventfd only then.
    caller_waiting: Line<AtomicU32>,
    /// Caller: the worker should exit.
    closing: Line<AtomicU32>,
    /// The 64-byte task: `[id, data[0..7]]`, as W6's `Tiny`.
    request: Line<[AtomicU64; 8]>,
    /// The answer: the task with `data[0] = id`, as W6's `echo` does.
    response: Line<[AtomicU64; 8]>,
}

/// The process-isolation floor (W6): a forked worker process answering 64-byte requests
/// through a memfd-backed shared page, woken by two eventfds under an event-count
/// protocol (announce the sleep, re-check, sleep; the other side writes the eventfd only
/// when it sees the announcement). The worker always sleeps between requests; the caller
/// sleeps at once (`sleeping`) or polls first (`polling`).
struct PingPong {
    map: MmapRaw,
    /// The worker's eventfd: the caller writes it, the worker blocks reading it.
    to_worker: OwnedFd,
    /// The caller's eventfd: the worker writes it, the caller blocks reading it.
    to_caller: OwnedFd,
    worker: Pid,
    /// The last request's number; held for a whole loop, so one caller at a time.
    last: Mutex<u64>,
}

impl PingPong {
    /// Creates the page and eventfds and forks the worker. Called at the top of `main`,
    /// before the tokio runtime or any other thread exists (checked).
    fn fork() -> Self {
        let threads = std::fs::read_dir("/proc/self/task").map_or(0, |dir| dir.count());
        assert_eq!(
            threads, 1,
            "the floor's worker must be forked while the bench has one thread"
        );
        let memfd = memfd_create("aqueduct-bench-floor", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&memfd, 4096).unwrap();
        let map = MmapRaw::map_raw(&memfd).unwrap();
        drop(memfd);
        let to_worker = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let to_caller = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        let parent = rustix::process::getpid();
        // SAFETY: this process has one thread (checked above), so the child starts as a
        // complete, consistent copy: no lock is held by a thread that does not exist there.
        // The child never returns from the `0` arm: it serves, then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Dies with the bench even if the bench dies without closing it; and if
                // the bench already died before this line, exits at once.
                set_parent_process_death_signal(Some(Signal::KILL)).unwrap();
                if rustix::process::getppid() == Some(parent) {
                    serve(shared(&map), &to_worker, &to_caller);
                }
            }))
            .map_or(1, |()| 0);
            // SAFETY: `_exit` ends the child right here, without returning into the
            // bench's `main` and without running the atexit handlers or flushing the
            // stdio buffers it copied from the bench.
            unsafe { libc::_exit(status) }
        }
        assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
        let worker = Pid::from_raw(pid).expect("a child's pid is positive");
        Self {
            map,
            to_worker,
            to_caller,
            worker,
            last: Mutex::new(0),
        }
    }

    /// p50 and p99, in microseconds, of `count` round trips one after another, the caller
    /// polling for each answer for up to `spin` before sleeping.
    fn round_trips(&self, count: usize, spin: Duration) -> (f64, f64) {
        let mut last = self.last.lock().unwrap();
        let page = shared(&self.map);
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            *last += 1;
            let seq = *last;
            let started = Instant::now();
            // The caller's half of the protocol: write the task, publish it, wake the
            // worker if it announced that it sleeps ...
            page.request.0[0].store(seq, Ordering::Relaxed);
            for word in &page.request.0[1..] {
                word.store(0, Ordering::Relaxed);
            }
            page.req_seq.0.store(seq, Ordering::Release);
            fence(Ordering::SeqCst);
            if page.worker_waiting.0.swap(0, Ordering::SeqCst) != 0 {
                notify(&self.to_worker);
            }
            // ... then wait for the answer: poll, then announce, re-check, sleep.
            let polled = Instant::now();
            while page.resp_seq.0.load(Ordering::Acquire) < seq {
                let waited = polled.elapsed();
                if waited < PURE_SPIN.min(spin) {
                    std::hint::spin_loop();
                    continue;
                }
                if waited < spin {
                    std::thread::yield_now();
                    continue;
                }
                page.caller_waiting.0.store(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if page.resp_seq.0.load(Ordering::SeqCst) < seq {
                    wait(&self.to_caller);
                }
                page.caller_waiting.0.store(0, Ordering::SeqCst);
            }
            let answer: [u64; 8] =
                std::array::from_fn(|i| page.response.0[i].load(Ordering::Relaxed));
            latencies.push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(
                answer[..2],
                [seq, seq],
                "the floor's worker answered wrongly"
            );
        }
        latencies.sort_by(f64::total_cmp);
        (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        shared(&self.map).closing.0.store(1, Ordering::SeqCst);
        notify(&self.to_worker);
        let _ = waitpid(Some(self.worker), WaitOptions::empty());
    }
}

/// The floor's shared page, viewed as its atomics.
fn shared(map: &MmapRaw) -> &Shared {
    assert!(map.len() >= std::mem::size_of::<Shared>());
    // SAFETY: the mapping is page-aligned (more than `Shared`'s 64), at least as long as
    // `Shared` (checked above) and mapped for as long as `map` is borrowed; it started
    // zero-filled (a fresh memfd), a valid value of every atomic in `Shared`; and both
    // processes access it only through those atomics, so no access is a data race.
    unsafe { &*map.as_ptr().cast::<Shared>() }
}

/// The floor's worker process: answers requests in order until `closing`, sleeping on its
/// eventfd whenever none is waiting.
fn serve(page: &Shared, to_worker: &OwnedFd, to_caller: &OwnedFd) {
    let mut seen = 0;
    loop {
        if page.closing.0.load(Ordering::Acquire) != 0 {
            return;
        }
        let seq = page.req_seq.0.load(Ordering::Acquire);
        if seq > seen {
            for (out, word) in page.response.0.iter().zip(&page.request.0) {
                out.store(word.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            // W6's `echo`: `data[0] = id`.
            page.response.0[1].store(page.request.0[0].load(Ordering::Relaxed), Ordering::Relaxed);
            seen = seq;
            page.resp_seq.0.store(seq, Ordering::Release);
            fence(Ordering::SeqCst);
            if page.caller_waiting.0.swap(0, Ordering::SeqCst) != 0 {
                notify(to_caller);
            }
            continue;
        }
        page.worker_waiting.0.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if page.req_seq.0.load(Ordering::SeqCst) == seen
            && page.closing.0.load(Ordering::SeqCst) == 0
        {
            wait(to_worker);
        }
        page.worker_waiting.0.store(0, Ordering::SeqCst);
    }
}

fn notify(eventfd: &OwnedFd) {
    rustix::io::write(eventfd, &1u64.to_ne_bytes()).expect("eventfd write failed");
}

/// Blocks until the eventfd was written (and resets it).
fn wait(eventfd: &OwnedFd) {
    let mut count = [0u8; 8];
    loop {
        match rustix::io::read(eventfd, &mut count[..]) {
            Ok(_) => return,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("eventfd read failed: {e}"),
        }
    }
}

/// The polling (`spin` = [`QUIET_SPIN`]) or sleeping (`spin` = 0) floor's p50 and p99,
/// in microseconds, over `count` round trips, called from a thread of the runtime's
/// blocking pool (a plain thread: the floor's caller has no runtime in its way).
async fn floor_latency(floor: &Arc<PingPong>, count: usize, spin: Duration) -> (f64, f64) {
    let floor = floor.clone();
    tokio::task::spawn_blocking(move || floor.round_trips(count, spin))
        .await
        .expect("floor loop failed")
}

/// A `tracing` subscriber that is interested in nothing: what the runtime's spans and
/// events cost when a subscriber is installed but filters them all out.
struct Uninterested;

impl tracing::Subscriber for Uninterested {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter selects workloads: `-- W3 W4`.
    // `--load N` (or `--load=N`): N busy threads during W1's and W6's rounds.
    let (mut flags, mut filters, mut load) = (Vec::new(), Vec::new(), 0usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let count = if arg == "--load" {
            args.next()
        } else {
            arg.strip_prefix("--load=").map(str::to_owned)
        };
        if let Some(count) = count {
            load = count.parse().expect("--load takes a number of threads");
        } else if arg.starts_with('-') {
            flags.push(arg);
        } else {
            filters.push(arg);
        }
    }
    let named = |name: &str| filters.iter().any(|f| f.eq_ignore_ascii_case(name));
    let wanted = |name: &str| filters.is_empty() || named(name);
    // First of all, while this process has one thread: W6's floor forks its worker.
    let floor = wanted("W6").then(|| Arc::new(PingPong::fork()));
    // `--metrics` (with `--features metrics`): a Prometheus recorder receives the
    // runtime's metrics. `--uninterested-subscriber`: a tracing subscriber that filters
    // every span and event out.
    if flags.iter().any(|flag| flag == "--metrics") {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(aqueduct::metrics::BUCKETS)
            .unwrap()
            .install_recorder()
            .unwrap();
        eprintln!("metrics: Prometheus recorder installed");
    }
    if flags.iter().any(|flag| flag == "--uninterested-subscriber") {
        tracing::subscriber::set_global_default(Uninterested).unwrap();
    }
    // `--runtime-threads=N`: the runtime's worker threads; 2 unless told, whatever the
    // machine (every recorded figure was measured with 2).
    let runtime_threads = flags
        .iter()
        .find_map(|flag| flag.strip_prefix("--runtime-threads="))
        .map_or(2, |n| n.parse().expect("--runtime-threads takes a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(runtime_threads)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if named("probe") {
            probe::run(&flags, load).await;
        }
        if wanted("W1") {
            w1(load).await;
        }
        if wanted("W2") {
            w2().await;
        }
        if wanted("W3") {
            w3().await;
        }
        if wanted("W4") {
            w4().await;
        }
        if wanted("W5") {
            w5().await;
        }
        if let Some(floor) = floor {
            w6(load, floor).await;
        }
        if wanted("W7") {
            w7().await;
        }
        #[cfg(feature = "tower")]
        if wanted("W8") {
            w8().await;
        }
        if wanted("W9") {
            w9().await;
        }
        if wanted("W10") {
            w10().await;
        }
    });
}
