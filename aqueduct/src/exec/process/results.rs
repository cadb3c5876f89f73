//! Reading a worker's answer back: every slot and handle is validated, because the
//! control region is shared with a process that may be buggy.

use std::ops::Range;
use std::sync::atomic::AtomicU64;

use super::channel::Region;
use super::wire::{self, Geometry, Read};
use crate::exec::BatchResults;
use crate::shm::arena::Arena;
use crate::shm::ownership::{self, handles_of};
use crate::shm::scratch::{ImportError, Scratch};
use crate::shm::{Owned, ShmHandle};
use crate::task::TaskField;
use crate::{Error, Stage};

/// Where the answer to one request lies.
pub(super) struct Answer<'a> {
    pub ctl: &'a Region,
    pub geometry: Geometry,
    /// The request's lane: its response slots, and its part of the scratch area.
    pub lane: usize,
    /// The request's number.
    pub seq: u64,
    /// The number of the last request published to the worker (read after the
    /// response, see [`wire::check_answer`]).
    pub published: &'a AtomicU64,
    /// Byte offsets of the arena handles inside an output task.
    pub output_handles: &'a [usize],
    pub scratch: &'a Scratch,
}

/// Reads and validates the worker's response to `batch`. This is where outputs cross
/// back from a worker process into the runtime's custody: each comes back owning one
/// reference per handle (scratch blocks copied in, lent handles retained).
pub(super) fn take_results<S: Stage>(
    answer: &Answer<'_>,
    batch: &[S::Input],
) -> Result<BatchResults<Owned<S::Output>>, String> {
    let count = batch.len();
    wire::check_answer(
        answer.ctl,
        &answer.geometry,
        answer.lane,
        answer.seq,
        count,
        answer.published,
    )?;
    let (lent, made) = (lent_with(batch), made_for(answer));
    let mut results = Vec::with_capacity(count);
    for index in 0..count {
        // On a violation, the outputs adopted so far are dropped (released) with `results`.
        results.push(take_one::<S>(answer, index, &lent, &made)?);
    }
    Ok(results)
}

/// Of a lost worker's batch, each task's result (its output or its handler's error), if
/// the worker left a valid one.
pub(super) type Salvaged<O> = Vec<Option<Result<Owned<O>, String>>>;

/// What a lost worker left of its answer to `batch`: for each task up to the returned
/// count, its result if the worker wrote a valid one (validated and adopted as
/// [`take_results`] does), `None` if it may have run without one; the tasks past the
/// count never began.
///
/// A worker that `died` (or was killed past its timeout) says how many tasks it had
/// begun ([`wire::begun`]); any other (one whose answer broke the protocol) and one
/// whose words do not agree count every task as begun. Results count one by one: a
/// valid slot is the worker's own answer for that task, whatever is wrong elsewhere.
pub(super) fn take_lost<S: Stage>(
    answer: &Answer<'_>,
    batch: &[S::Input],
    died: bool,
) -> (Salvaged<S::Output>, usize) {
    let Answer {
        ctl,
        geometry,
        lane,
        seq,
        ..
    } = *answer;
    let count = batch.len();
    let mut begun = died
        .then(|| wire::begun(ctl, &geometry, lane, seq, count))
        .flatten()
        .unwrap_or(count);
    // Results are written only for tasks that began: one stamped for the request past
    // the count is a stray write's, and then the count is not taken at its word.
    if (begun..count).any(|index| wire::stamped(ctl, &geometry, lane, seq, index)) {
        begun = count;
    }
    // An answer that was published but is not this request's, or not whole, says
    // nothing about any one task.
    if !died && wire::check_answer(ctl, &geometry, lane, seq, count, answer.published).is_err() {
        return ((0..count).map(|_| None).collect(), count);
    }
    let (lent, made) = (lent_with(batch), made_for(answer));
    let results = (0..begun)
        .map(|index| take_one::<S>(answer, index, &lent, &made).ok())
        .collect();
    (results, begun)
}

/// Reads and adopts result `index` of the answer: the output or the handler's error;
/// `Err` for a slot that is not the worker's valid answer for that task.
fn take_one<S: Stage>(
    answer: &Answer<'_>,
    index: usize,
    lent: &[ShmHandle],
    made: &Made<'_>,
) -> Result<Result<Owned<S::Output>, String>, String> {
    let mut output = <S::Output as bytemuck::Zeroable>::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut output);
    let (ctl, geometry) = (answer.ctl, &answer.geometry);
    match wire::read_result(ctl, geometry, answer.lane, answer.seq, index, bytes)? {
        Read::Output => match adopt_handles(&mut output, answer.output_handles, lent, made) {
            Ok(()) => Ok(Ok(Owned::new(output))),
            // No room in the arena for what the handler made: that task fails, as it
            // would have in a worker thread; the worker did nothing wrong.
            Err(Rejected::Resources(error)) => Ok(Err(error.to_string())),
            Err(Rejected::Invalid(reason)) => Err(format!("result {index}: {reason}")),
        },
        Read::Error(message) => Ok(Err(message)),
    }
}

/// The handles lent to the worker with `batch`: an output may name any of them.
fn lent_with<T: TaskField>(batch: &[T]) -> Vec<ShmHandle> {
    batch.iter().flat_map(handles_of).collect()
}

/// The blocks the worker may have made for the answer: in its lane's window of its
/// scratch, for its request.
fn made_for<'a>(answer: &Answer<'a>) -> Made<'a> {
    Made {
        scratch: answer.scratch,
        window: answer
            .geometry
            .scratch_window(answer.scratch.capacity(), answer.lane),
        request: answer.seq,
    }
}

/// How many bytes of blocks the worker made the first `count` results claim, read
/// before any validation: only to choose where [`take_results`] copies them (a false
/// claim then fails validation there, as any other).
pub(super) fn claimed_copy_bytes(answer: &Answer<'_>, count: usize) -> u64 {
    let mut total = 0u64;
    for index in 0..count {
        for &at in answer.output_handles {
            let mut handle = ShmHandle::EMPTY;
            let raw = bytemuck::bytes_of_mut(&mut handle);
            if wire::peek_result(answer.ctl, &answer.geometry, answer.lane, index, at, raw)
                && Scratch::is_scratch(&handle)
            {
                total = total.saturating_add(handle.len);
            }
        }
    }
    total
}

/// Why an output's handles could not be adopted.
enum Rejected {
    /// A handle the worker had no right to produce: a protocol violation.
    Invalid(String),
    /// No room to copy a block the worker made: fails that task only.
    Resources(Error),
}

/// The blocks a worker made for one request: those in `window` of its scratch area.
struct Made<'a> {
    scratch: &'a Scratch,
    window: Range<usize>,
    /// The request they were made for.
    request: u64,
}

/// Makes `output`'s handles the parent's own: each must be empty, a block the worker
/// made for this request (copied into the arena), or one of the `lent` handles
/// (retained). On error, whatever was adopted is released again.
fn adopt_handles<T: TaskField>(
    output: &mut T,
    offsets: &[usize],
    lent: &[ShmHandle],
    made: &Made<'_>,
) -> Result<(), Rejected> {
    let mut adopted = Vec::with_capacity(offsets.len());
    let result = offsets.iter().try_for_each(|&offset| {
        let bytes = bytemuck::bytes_of_mut(output);
        let slot = &mut bytes[offset..offset + size_of::<ShmHandle>()];
        let handle: ShmHandle = bytemuck::pod_read_unaligned(slot);
        let owned = if handle.is_empty() {
            ShmHandle::EMPTY
        } else if Scratch::is_scratch(&handle) {
            made.scratch.import(&handle, made.window.clone(), made.request).map_err(|e| match e {
                ImportError::Invalid(reason) => Rejected::Invalid(reason),
                ImportError::Arena(error) => Rejected::Resources(error),
            })?
        } else if lent.contains(&handle) {
            Arena::global()
                .and_then(|arena| arena.retain(&handle))
                .map_err(|e| Rejected::Invalid(e.to_string()))?;
            handle
        } else {
            return Err(Rejected::Invalid(format!(
                "handle (offset {}, length {}, generation {}) names no block lent to the worker nor one it created",
                handle.offset, handle.len, handle.generation
            )));
        };
        slot.copy_from_slice(bytemuck::bytes_of(&owned));
        adopted.push(owned);
        Ok(())
    });
    if result.is_err() {
        ownership::release_all(&adopted);
    }
    result
}

/// Byte offsets of the arena handles inside a `T`, found by visiting a probe value
/// whose every 8-byte word names its own position.
pub(super) fn handle_offsets<T: TaskField>() -> Result<Vec<usize>, String> {
    if !T::HAS_HANDLES {
        return Ok(Vec::new());
    }
    const TAG: u64 = 0x5A5A_0000_0000_0000;
    let mut probe = <T as bytemuck::Zeroable>::zeroed();
    for (i, word) in bytemuck::bytes_of_mut(&mut probe)
        .chunks_exact_mut(8)
        .enumerate()
    {
        word.copy_from_slice(&(TAG | i as u64).to_ne_bytes());
    }
    let mut offsets = Vec::new();
    let mut bad = false;
    crate::task::for_each_handle(&probe, &mut |handle| {
        if handle.offset & !0xFFFF_FFFF == TAG {
            offsets.push((handle.offset & 0xFFFF_FFFF) as usize * 8);
        } else {
            bad = true;
        }
    });
    let bytes = bytemuck::bytes_of(&probe);
    let consistent = !bad
        && offsets.iter().all(|&offset| {
            offset + size_of::<ShmHandle>() <= bytes.len()
                && bytemuck::pod_read_unaligned::<ShmHandle>(
                    &bytes[offset..offset + size_of::<ShmHandle>()],
                )
                .offset
                    == TAG | (offset / 8) as u64
        });
    if consistent {
        Ok(offsets)
    } else {
        Err(format!(
            "`{}` reports shared-memory handles that are not stored in place, so they cannot cross to a worker process",
            std::any::type_name::<T>()
        ))
    }
}
