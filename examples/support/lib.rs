//! Support code shared by the examples and the integration tests. Kept tiny: anything a
//! user would need belongs in `aqueduct` itself.

/// The naive recursive Fibonacci number: deliberately slow, a stand-in for CPU-bound work.
pub fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Median of `values` (which it sorts); `0.0` when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A gate that blocks callers of [`Gate::wait`] until [`Gate::open`]: tests use it to hold
/// a worker inside its handler (or its `init`) for exactly as long as they need, instead
/// of sleeping and hoping.
#[derive(Debug, Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

impl Gate {
    /// A closed gate, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            open: std::sync::Mutex::new(false),
            changed: std::sync::Condvar::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Blocks until the gate is open.
    pub fn wait(&self) {
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.changed.wait(open).unwrap_or_else(|p| p.into_inner());
        }
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many threads are blocked in [`Gate::wait`] now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Opens the gate for good, releasing every waiter.
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }
}

/// Waits (yielding to the async runtime, never sleeping) until `condition` holds.
/// Panics after `limit` so a broken test fails instead of hanging.
pub async fn until(limit: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Calls `flow` once for each id, all at once, each call a task of its own as a
/// service's requests would be (`make` builds the id's task); the outcomes with their
/// ids, in id order.
pub async fn call_each<In, Out>(
    flow: &aqueduct::Flow<In, Out>,
    ids: impl IntoIterator<Item = u64>,
    make: impl Fn(u64) -> In,
) -> Vec<(u64, Result<aqueduct::Owned<Out>, aqueduct::Error>)>
where
    In: aqueduct::Task + Send + 'static,
    Out: aqueduct::Task,
{
    let calls: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let flow = flow.clone();
            let task = make(id);
            (id, tokio::spawn(async move { flow.process(task).await }))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(calls.len());
    for (id, call) in calls {
        outcomes.push((id, call.await.expect("a call's task panicked")));
    }
    outcomes
}
