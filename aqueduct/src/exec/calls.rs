//! How a worker calls the handler on the tasks of one hand-off: split into calls of the
//! stage's `batch_size` (or, for a handler that takes one task, into runs that fill a
//! few pages), each call behind a panic boundary that answers every task of it.

use super::BatchResults;
use crate::shapes::catch;
use crate::shm::{owned, Owned};
use crate::Stage;

/// Calls the handler on the tasks a worker thread received, in calls of
/// [`tasks_per_call`] (the runner may send several single-task batches in one
/// hand-off), each call through the handler boundary [`owned::call_handler`]: outputs
/// come back owning their references, the inputs' are released, and so are the blocks
/// the call allocated and did not keep (for a run of tasks, after its last). The caller
/// times it: its worker reads the clock twice a batch, and the second reading is also
/// when it answered.
pub(crate) fn run_batch<S: Stage>(
    state: &mut S::State,
    inputs: Vec<Owned<S::Input>>,
) -> BatchResults<Owned<S::Output>> {
    in_batches::<S, _, _>(state, inputs, |state, inputs| {
        owned::call_handler(inputs, |inputs| call_handler::<S>(state, inputs))
    })
}

/// Splits `inputs` into calls of [`tasks_per_call`] and concatenates what `call`
/// returns for each.
fn in_batches<S: Stage, I, O>(
    state: &mut S::State,
    inputs: Vec<I>,
    mut call: impl FnMut(&mut S::State, Vec<I>) -> BatchResults<O>,
) -> BatchResults<O> {
    // One call: its inputs and results as they are, with no vector made again.
    if inputs.len() <= tasks_per_call::<S>() {
        return call(state, inputs);
    }
    let mut results = Vec::with_capacity(inputs.len());
    for_each_call::<S, _, _>(state, inputs.into_iter(), call, |result| {
        results.push(result)
    });
    results
}

/// The most inputs one call of [`Stage::handle`] takes: the stage's `batch_size`, or for
/// a handler that takes one task (see [`Stage::EACH_ON_ITS_OWN`]) as many as fill
/// [`EACH_CALL_BYTES`]. A call of one task costs two vectors (its input and its result),
/// about as much as a no-op handler's whole call: three process stages of such handlers
/// ran 116 ns a task in their handler calls, 44 ns in runs.
fn tasks_per_call<S: Stage>() -> usize {
    if S::EACH_ON_ITS_OWN {
        (EACH_CALL_BYTES / size_of::<S::Input>().max(1)).max(1)
    } else {
        S::CONFIG.batch_size.max(1)
    }
}

/// Bytes of inputs one call of a handler that takes one task is given at most: the
/// vectors a call needs stay small (a request of large tasks is not copied whole).
const EACH_CALL_BYTES: usize = 16 * 1024;

/// Calls `call` on `inputs`, [`tasks_per_call`] of them at a time, and hands each result
/// to `each` as it comes, in order.
pub(crate) fn for_each_call<S: Stage, I, O>(
    state: &mut S::State,
    mut inputs: impl Iterator<Item = I>,
    mut call: impl FnMut(&mut S::State, Vec<I>) -> BatchResults<O>,
    mut each: impl FnMut(Result<O, String>),
) {
    let per_call = tasks_per_call::<S>();
    loop {
        let batch: Vec<I> = inputs.by_ref().take(per_call).collect();
        if batch.is_empty() {
            return;
        }
        call(state, batch).into_iter().for_each(&mut each);
    }
}

/// One handler call; a panic or a wrong number of results fails every task of the call.
pub(crate) fn call_handler<S: Stage>(
    state: &mut S::State,
    inputs: Vec<S::Input>,
) -> BatchResults<S::Output> {
    let count = inputs.len();
    match catch(|| S::handle(state, inputs)) {
        Ok(results) if results.len() == count => results,
        Ok(results) => {
            let message = format!(
                "handler returned {} results for {count} tasks",
                results.len()
            );
            (0..count).map(|_| Err(message.clone())).collect()
        }
        Err(panic) => (0..count).map(|_| Err(panic.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::StageConfig;

    thread_local! {
        /// How many tasks each call of a test stage's `handle` got, on this thread.
        static CALLS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    fn calls() -> Vec<usize> {
        CALLS.with(|calls| calls.take())
    }

    #[crate::task(crate = "crate")]
    struct Item {
        n: u64,
    }

    /// A task of 8 KiB: two fill a call of a handler that takes one task.
    #[crate::task(crate = "crate")]
    struct Large {
        n: u64,
        _rest: [u64; 1023],
    }

    /// Stages whose `handle` records its calls and fails task 3 with a panic, caught per
    /// task as the per-task shapes catch it.
    macro_rules! counted_stage {
        ($name:ident, $task:ident, $each:expr) => {
            struct $name;

            impl Stage for $name {
                type Input = $task;
                type Output = $task;
                type State = ();
                const NAME: &'static str = stringify!($name);
                const CONFIG: StageConfig = StageConfig::DEFAULT;
                const EACH_ON_ITS_OWN: bool = $each;

                fn init() -> Result<(), String> {
                    Ok(())
                }

                fn handle(_: &mut (), inputs: Vec<$task>) -> Vec<Result<$task, String>> {
                    CALLS.with(|calls| calls.borrow_mut().push(inputs.len()));
                    crate::shapes::in_place_each(inputs, |task| {
                        assert_ne!(task.n, 3, "task 3 fails");
                        Ok(())
                    })
                }
            }
        };
    }

    counted_stage!(EachOnItsOwn, Item, true);
    counted_stage!(OneByOne, Item, false);
    counted_stage!(LargeEach, Large, true);

    fn run<S: Stage<Input = T, Output = T, State = ()>, T: crate::Task>(
        tasks: impl Iterator<Item = T>,
        n: impl Fn(&T) -> u64,
    ) -> Vec<Result<u64, String>> {
        let inputs = tasks.map(Owned::new).collect();
        run_batch::<S>(&mut (), inputs)
            .into_iter()
            .map(|result| result.map(|task| n(&task)))
            .collect()
    }

    fn items(count: u64) -> impl Iterator<Item = Item> {
        (0..count).map(|n| Item { n })
    }

    fn check_results(results: &[Result<u64, String>]) {
        for (index, result) in results.iter().enumerate() {
            match result {
                Ok(n) => assert_eq!(*n, index as u64, "in order"),
                Err(message) => {
                    assert_eq!(index, 3, "only task 3 fails");
                    assert!(message.contains("task 3 fails"), "{message}");
                }
            }
        }
        assert!(results[3].is_err());
    }

    #[test]
    fn a_handler_that_takes_one_task_gets_a_run_in_one_call() {
        let results = run::<EachOnItsOwn, _>(items(10), |task| task.n);
        assert_eq!(calls(), [10], "one call for the run");
        check_results(&results);
    }

    #[test]
    fn a_batch_handler_gets_calls_of_its_batch_size() {
        let results = run::<OneByOne, _>(items(10), |task| task.n);
        assert_eq!(calls(), [1; 10], "batch_size 1: a call a task");
        check_results(&results);
    }

    #[test]
    fn large_tasks_go_to_a_handler_that_takes_one_task_a_few_at_a_time() {
        let tasks = (0..5).map(|n| Large {
            n,
            _rest: [0; 1023],
        });
        let results = run::<LargeEach, _>(tasks, |task| task.n);
        assert_eq!(calls(), [2, 2, 1], "16 KiB of inputs a call");
        check_results(&results);
    }
}
