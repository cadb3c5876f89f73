//! Adapters from each accepted handler signature to [`crate::Stage::handle`]'s
//! "one result per input" form. Each catches panics at the finest grain its shape allows:
//! per task for per-task shapes, per batch for batch shapes.

use std::cell::Cell;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::progress::Claim;

thread_local! {
    /// Whether this thread is inside [`catch`]: a panic here becomes a task's error.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Makes the panic hook silent for panics that [`catch`] turns into errors: each is
/// reported once, as the failed task's error (and the runtime's ERROR event), not also
/// printed to stderr, over a progress display or a service's log, by the default hook.
/// Any other panic goes to the hook that was installed before.
fn quiet_caught_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into its message.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    quiet_caught_panics();
    let outer = CATCHING.with(|catching| catching.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|catching| catching.set(outer));
    outcome.map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        format!("panicked: {text}")
    })
}

fn fail_all<T>(count: usize, message: &str) -> Vec<Result<T, String>> {
    (0..count).map(|_| Err(message.to_string())).collect()
}

/// `fn(&mut [T]) [-> Result<(), E>]`.
pub fn in_place_batch<T>(
    mut items: Vec<T>,
    f: impl FnOnce(&mut [T]) -> Result<(), String>,
) -> Vec<Result<T, String>> {
    match catch(|| f(&mut items)).and_then(|r| r) {
        Ok(()) => items.into_iter().map(Ok).collect(),
        Err(message) => fail_all(items.len(), &message),
    }
}

/// `fn(&mut T) [-> Result<(), E>]`. Each task's start and end are told to the call's
/// observer, if it has one (see `crate::progress`).
pub fn in_place_each<T: 'static>(
    items: Vec<T>,
    mut f: impl FnMut(&mut T) -> Result<(), String>,
) -> Vec<Result<T, String>> {
    let claim = Claim::take();
    items
        .into_iter()
        .map(|mut item| claim.task(|| catch(|| f(&mut item)).and_then(|r| r).map(|()| item)))
        .collect()
}

/// `fn(T) -> U` or `-> Result<U, E>`; observed as [`in_place_each`].
pub fn transform_each<T, U: 'static>(
    items: Vec<T>,
    mut f: impl FnMut(T) -> Result<U, String>,
) -> Vec<Result<U, String>> {
    let claim = Claim::take();
    items
        .into_iter()
        .map(|item| claim.task(|| catch(|| f(item)).and_then(|r| r)))
        .collect()
}

/// `fn(Vec<T>) -> Vec<U>` or `-> Result<Vec<U>, E>`; the output count must match.
pub fn transform_batch<T, U>(
    items: Vec<T>,
    f: impl FnOnce(Vec<T>) -> Result<Vec<U>, String>,
) -> Vec<Result<U, String>> {
    let count = items.len();
    match catch(|| f(items)).and_then(|r| r) {
        Ok(outputs) if outputs.len() == count => outputs.into_iter().map(Ok).collect(),
        Ok(outputs) => fail_all(
            count,
            &format!(
                "returned {} outputs for a batch of {count} tasks",
                outputs.len()
            ),
        ),
        Err(message) => fail_all(count, &message),
    }
}

/// `fn(&mut [T]) -> Vec<Result<(), E>>`: a failure fails only its task; a result count
/// that is not the batch's (or a panic) fails the batch.
pub fn in_place_batch_each<T>(
    mut items: Vec<T>,
    f: impl FnOnce(&mut [T]) -> Vec<Result<(), String>>,
) -> Vec<Result<T, String>> {
    let count = items.len();
    match catch(|| f(&mut items)) {
        Ok(results) if results.len() == count => items
            .into_iter()
            .zip(results)
            .map(|(item, result)| result.map(|()| item))
            .collect(),
        Ok(results) => fail_all(count, &miscount(results.len(), count)),
        Err(message) => fail_all(count, &message),
    }
}

/// `fn(Vec<T>) -> Vec<Result<U, E>>`: a failure fails only its task; a result count that
/// is not the batch's (or a panic) fails the batch.
pub fn transform_batch_each<T, U>(
    items: Vec<T>,
    f: impl FnOnce(Vec<T>) -> Vec<Result<U, String>>,
) -> Vec<Result<U, String>> {
    let count = items.len();
    match catch(|| f(items)) {
        Ok(results) if results.len() == count => results,
        Ok(results) => fail_all(count, &miscount(results.len(), count)),
        Err(message) => fail_all(count, &message),
    }
}

fn miscount(results: usize, count: usize) -> String {
    format!("returned {results} results for a batch of {count} tasks")
}

/// A per-task handler's results, with their errors rendered by `display`.
pub fn task_errors<T, E>(
    results: Vec<Result<T, E>>,
    display: DisplayFn<E>,
) -> Vec<Result<T, String>> {
    results
        .into_iter()
        .map(|result| error_message(result, display))
        .collect()
}

/// A fallible handler's result, with its error rendered by `display`.
///
/// `display` is `<E as Display>::fmt`, named by the generated code at the user's `E`:
/// an error type that is not `Display` is then reported there, as such, rather than as a
/// bound of this function.
pub fn error_message<T, E>(result: Result<T, E>, display: DisplayFn<E>) -> Result<T, String> {
    struct Shown<'a, E>(&'a E, DisplayFn<E>);
    impl<E> Display for Shown<'_, E> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            (self.1)(self.0, f)
        }
    }
    result.map_err(|e| Shown(&e, display).to_string())
}

/// What a handler may return under a generic name other than `Result`: an alias of
/// `Result<T, E>` (`type Fallible<T> = Result<T, MyError>`). Implemented for `Result` only,
/// so the type system decides, whatever the alias is called.
#[diagnostic::on_unimplemented(
    message = "a handler returns a `#[task]` type or a `Result` of one, not `{Self}`",
    label = "neither a `#[task]` type nor an alias of `Result<{T}, E>`",
    note = "the handler signatures are `fn(T) -> U`, `fn(Vec<T>) -> Vec<U>` and the in-place forms, each optionally returning `Result<_, E>` with `E: Display`"
)]
pub trait ResultAlias<T, E> {
    /// The result itself.
    fn into_result(self) -> Result<T, E>;
}

impl<T, E> ResultAlias<T, E> for Result<T, E> {
    fn into_result(self) -> Self {
        self
    }
}

/// `<E as Display>::fmt`.
pub type DisplayFn<E> = fn(&E, &mut std::fmt::Formatter<'_>) -> std::fmt::Result;

/// What `init = path` may name: a function (or closure) that takes no arguments. The
/// worker calls it once, before taking work; the function reads its own configuration.
#[diagnostic::on_unimplemented(
    message = "`init` names a function that takes no arguments, not `{Self}`",
    label = "not a `fn() -> State`",
    note = "the worker calls `init()` once before its first batch; read configuration (paths, sizes) inside it, from constants or the environment"
)]
pub trait InitFn {
    /// What the function returns.
    type Output;
    /// Calls it.
    fn call(self) -> Self::Output;
}

// `do_not_recommend`: a function that takes arguments is then reported as not an
// `InitFn`, not as rustc's "add an argument", which `init = …` cannot take.
#[allow(unknown_or_malformed_diagnostic_attributes)]
#[diagnostic::do_not_recommend]
impl<F: FnOnce() -> R, R> InitFn for F {
    type Output = R;
    fn call(self) -> R {
        self()
    }
}

/// What an `init = path` function may return: the state itself, or `Result<State, E>`.
#[diagnostic::on_unimplemented(
    message = "`init` must return the handler's state `{S}` or `Result<{S}, E>` with `E: Display`, not `{Self}`",
    label = "returns `{Self}`"
)]
pub trait InitOutput<S> {
    /// The state, or the error's message.
    fn into_state(self) -> Result<S, String>;
}

impl<S> InitOutput<S> for S {
    fn into_state(self) -> Result<S, String> {
        Ok(self)
    }
}

impl<S, E: Display> InitOutput<S> for Result<S, E> {
    fn into_state(self) -> Result<S, String> {
        self.map_err(|e| e.to_string())
    }
}
