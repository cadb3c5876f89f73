"""The Rust bench's workloads W1-W4 on the Python Aqueduct 1.15.0, printing the same
`Wn key=value` lines (medians of several rounds).

Run through `bench/python/compare.sh`, or directly: `.venv/bin/python workloads.py [W1 ...]`.

Where the Python library has options, it gets its best case: `queue_size` above the number
of tasks in flight (its documented workaround for the collapse of polling backpressure),
metrics and debug logging off, and numpy arrays (its zero-copy shared-memory path) for W3.
"""
import asyncio
import multiprocessing as mp
import statistics
import sys
import time

import numpy as np

from aqueduct import BaseTask, BaseTaskHandler, Flow, FlowStep, log

log.setLevel('ERROR')

ROUNDS = 3
QUEUE = 1024


def median(values):
    return statistics.median(values)


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


async def throughput(flow, count, in_flight, make, timeout=120.0):
    """Runs `count` tasks with at most `in_flight` outstanding; tasks/s."""
    semaphore = asyncio.Semaphore(in_flight)

    async def one(i):
        async with semaphore:
            task = make(i)
            await flow.process(task, timeout_sec=timeout)

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.monotonic() - started)


# ---------------------------------------------------------------- W1 overhead

class Small(BaseTask):
    def __init__(self, i):
        super().__init__()
        self.id = i
        self.a = 0
        self.b = 0
        self.c = 0


class SetA(BaseTaskHandler):
    def handle(self, *tasks):
        for t in tasks:
            t.a = 1


class SetB(BaseTaskHandler):
    def handle(self, *tasks):
        for t in tasks:
            t.b = 2


class SetC(BaseTaskHandler):
    def handle(self, *tasks):
        for t in tasks:
            t.c = 3


async def w1():
    flow = Flow(FlowStep(SetA()), FlowStep(SetB()), FlowStep(SetC()), metrics_enabled=False, queue_size=QUEUE)
    flow.start()
    rates, p50s, p99s = [], [], []
    for _ in range(ROUNDS):
        rates.append(await throughput(flow, 10000, 256, Small))
        latencies = []
        for i in range(2000):
            task = Small(i)
            started = time.monotonic()
            await flow.process(task)
            latencies.append((time.monotonic() - started) * 1e6)
            assert (task.a, task.b, task.c) == (1, 2, 3)
        latencies.sort()
        p50s.append(percentile(latencies, 0.5))
        p99s.append(percentile(latencies, 0.99))
    rate = median(rates)
    print(f"W1 isolation=process stages=3 tasks_per_s={rate:.0f} latency_p50_us={median(p50s):.1f} "
          f"latency_p99_us={median(p99s):.1f} cost_per_task_per_stage_us={1e6 / rate / 3:.2f}", flush=True)
    await flow.stop(graceful=False)


# ---------------------------------------------------------------- W2 batching

IMAGE_COST = 0.01


class CatImage(BaseTask):
    def __init__(self, i):
        super().__init__()
        self.array = np.array([i, 2, 3])
        self.result = None


class CatDetector(BaseTaskHandler):
    def __init__(self, batches, tasks):
        super().__init__()
        self.batches = batches
        self.tasks = tasks

    def handle(self, *tasks):
        n = len(tasks)
        time.sleep(IMAGE_COST if n == 1 else IMAGE_COST * n * 0.7)
        for t in tasks:
            t.result = True
        with self.batches.get_lock():
            self.batches.value += 1
            self.tasks.value += n


async def w2():
    ideal = 1 / (IMAGE_COST * 0.7)
    for timeout_ms in (0, 50):
        batches, tasks = mp.Value('q', 0), mp.Value('q', 0)
        flow = Flow(FlowStep(CatDetector(batches, tasks), batch_size=20, batch_timeout=timeout_ms / 1000),
                    metrics_enabled=False, queue_size=QUEUE)
        flow.start()
        rates = [await throughput(flow, 2000, 200, CatImage) for _ in range(ROUNDS)]
        rate = median(rates)
        print(f"W2 batch_timeout_ms={timeout_ms} batch_size=20 tasks_per_s={rate:.1f} "
              f"mean_batch_size={tasks.value / max(batches.value, 1):.1f} efficiency_pct={100 * rate / ideal:.1f}", flush=True)
        await flow.stop(graceful=False)


# ---------------------------------------------------------------- W3 payload

class Payload(BaseTask):
    def __init__(self, size, i):
        super().__init__()
        # Written once, then copied into a fresh shared-memory segment by share_value.
        self.payload = np.full(size, i % 256, dtype=np.uint8)
        self.share_value('payload')
        self.last = 0


class ReadLastByte(BaseTaskHandler):
    def handle(self, *tasks):
        for t in tasks:
            t.last = int(t.payload[-1])


async def w3():
    flow = Flow(FlowStep(ReadLastByte()), metrics_enabled=False, queue_size=QUEUE)
    flow.start()
    for label, size, count in (("1KB", 1 << 10, 5000), ("100KB", 100 << 10, 2000), ("1MB", 1 << 20, 500), ("10MB", 10 << 20, 100)):
        rates = [await throughput(flow, count, 32, lambda i: Payload(size, i)) for _ in range(ROUNDS)]
        rate = median(rates)
        print(f"W3 size={label} tasks_per_s={rate:.0f} mb_per_s={rate * size / 1e6:.0f}", flush=True)
    await flow.stop(graceful=False)


# ---------------------------------------------------------------- W4 scaling

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class FibTask(BaseTask):
    def __init__(self, n):
        super().__init__()
        self.n = n
        self.value = None


class Fib(BaseTaskHandler):
    def handle(self, *tasks):
        for t in tasks:
            t.value = fib(t.n)


def bare_processes(count, processes):
    """Tasks/s of `count` fib(25) calls on a plain pool of `processes`: the machine's own
    scaling at that moment, with no framework in the way (as the Rust bench's bare threads)."""
    with mp.get_context("fork").Pool(processes) as pool:
        started = time.monotonic()
        pool.map(fib, [25] * count, chunksize=1)
        return count / (time.monotonic() - started)


async def w4():
    # As in the Rust bench: each round measures one worker then two, back to back, and
    # the ratios are medians of those pairs; the bare ratio uses 200 tasks per side.
    flows = {}
    for nprocs in (1, 2):
        flows[nprocs] = Flow(FlowStep(Fib(), nprocs=nprocs), metrics_enabled=False, queue_size=QUEUE)
        flows[nprocs].start()
    rates, ratios, bare = {1: [], 2: []}, [], []
    for _ in range(ROUNDS):
        for nprocs in (1, 2):
            rates[nprocs].append(await throughput(flows[nprocs], 2000, 64, lambda i: FibTask(25)))
        ratios.append(rates[2][-1] / rates[1][-1])
        bare.append(bare_processes(200, 2) / bare_processes(200, 1))
    for flow in flows.values():
        await flow.stop(graceful=False)
    print(f"W4 isolation=process fib=25 nprocs1_tasks_per_s={median(rates[1]):.0f} "
          f"nprocs2_tasks_per_s={median(rates[2]):.0f} ratio={median(ratios):.2f} "
          f"bare_processes_ratio={median(bare):.2f}", flush=True)


async def main(wanted):
    for name, run in (("W1", w1), ("W2", w2), ("W3", w3), ("W4", w4)):
        if not wanted or name in wanted:
            await run()


if __name__ == '__main__':
    asyncio.run(main({a.upper() for a in sys.argv[1:]}))
