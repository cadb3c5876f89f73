//! The table of stages a worker process can run.
//!
//! Every `#[handler]` adds its stage to [`STAGES`], a table the linker assembles from all
//! crates of the program (`linkme`'s distributed slice: one linker section). The parent
//! names a worker's stage by its [`stage_hash`]; the worker looks the hash up here and
//! runs that entry. A worker thus only ever calls a real stage entry, and an unknown or
//! ambiguous hash is refused with a message. The parent checks the table before it
//! spawns, so a stage missing from it fails `start` instead of every worker.
//!
//! Hand-written [`Stage`] impls are added with [`register_stage!`](crate::register_stage).

use linkme::distributed_slice;

use super::spawn::Boot;
use super::worker::worker_entry;
use crate::{Stage, Task};

/// What a worker runs: `worker_entry::<S>` of its stage.
pub(crate) type Entry = fn(Boot) -> i32;

/// One stage a worker process can run. Made by [`StageEntry::of`] in the items that
/// `#[handler]` and [`register_stage!`](crate::register_stage) generate.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct StageEntry {
    hash: u64,
    name: &'static str,
    entry: Entry,
}

impl StageEntry {
    /// The entry of stage `S`.
    pub const fn of<S: Stage>() -> Self {
        Self {
            hash: stage_hash::<S>(),
            name: S::NAME,
            entry: worker_entry::<S>,
        }
    }
}

/// Every registered stage of this program.
#[doc(hidden)]
#[distributed_slice]
pub static STAGES: [StageEntry];

/// Registers a hand-written [`Stage`] impl so that it can run in worker processes
/// (`isolation = "process"`, the default).
///
/// A worker process finds the stage it runs in a table the linker builds from every
/// registered stage; `#[aqueduct::handler]` registers its stages itself. Starting a flow
/// with a process stage that is not registered fails with [`Error::Init`](crate::Error).
///
/// ```
/// # #[aqueduct::task] struct Num { n: u64 }
/// struct Double;
///
/// impl aqueduct::Stage for Double {
///     type Input = Num;
///     type Output = Num;
///     type State = ();
///     const NAME: &'static str = "double";
///     const CONFIG: aqueduct::StageConfig = aqueduct::StageConfig::DEFAULT;
///     fn init() -> Result<(), String> {
///         Ok(())
///     }
///     fn handle(_: &mut (), inputs: Vec<Num>) -> Vec<Result<Num, String>> {
///         inputs.into_iter().map(|x| Ok(Num { n: x.n * 2 })).collect()
///     }
/// }
///
/// aqueduct::register_stage!(Double);
/// ```
#[macro_export]
macro_rules! register_stage {
    ($stage:ty) => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::__private::STAGES)]
            #[linkme(crate = $crate::__private::linkme)]
            static STAGE: $crate::__private::StageEntry =
                $crate::__private::StageEntry::of::<$stage>();
        };
    };
}

/// The entry registered for `hash` (worker side).
pub(crate) fn find(hash: u64) -> Result<Entry, String> {
    let mut found = STAGES.iter().filter(|stage| stage.hash == hash);
    match (found.next(), found.next()) {
        (Some(stage), None) => Ok(stage.entry),
        (None, _) => Err(format!(
            "no registered stage has the hash {hash:#018x} the parent asked for"
        )),
        (Some(stage), Some(_)) => Err(format!(
            "stage `{}` is registered more than once (or shares its name and task types \
             with another stage)",
            stage.name
        )),
    }
}

/// Whether a worker process could find stage `S` (parent side, before spawning).
pub(crate) fn check<S: Stage>() -> Result<(), String> {
    let hash = stage_hash::<S>();
    match STAGES.iter().filter(|stage| stage.hash == hash).count() {
        1 => Ok(()),
        0 => Err(format!(
            "stage `{}` is not registered, so a worker process could not find it: a \
             hand-written `Stage` impl that runs in worker processes must be registered \
             with `aqueduct::register_stage!({})`",
            S::NAME,
            std::any::type_name::<S>()
        )),
        n => Err(format!(
            "{n} registered stages are named `{}` with the same task types (or it is \
             registered twice), so a worker process could not tell them apart; rename one",
            S::NAME
        )),
    }
}

/// Identifies a stage across the process boundary: name plus both task layouts.
pub(crate) const fn stage_hash<S: Stage>() -> u64 {
    crate::hash::Digest::new()
        .str(S::NAME)
        .word(<S::Input as Task>::FINGERPRINT)
        .word(<S::Output as Task>::FINGERPRINT)
        .word(size_of::<S::Input>() as u64)
        .word(size_of::<S::Output>() as u64)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_hash_is_refused() {
        let error = find(0x0bad).unwrap_err();
        assert!(error.contains("no registered stage"), "{error}");
    }
}
