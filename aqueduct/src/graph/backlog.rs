//! A processor's inputs fed but not yet dispatched to its flow, one line per priority:
//! the next to go is the oldest of the highest priority, found without looking through
//! the others. (A single line searched for it at every dispatch made feeding n inputs
//! quadratic: 300 000 inputs took 136 us each, 1000 took 2.)

use std::collections::VecDeque;

use crate::shm::Owned;
use crate::Task;

/// An input waiting for dispatch: the copy that goes to the flow and the copy kept for
/// the result handle, each owning one reference per shared-memory handle.
pub(super) struct Queued<In: Task> {
    pub id: u64,
    pub task: Owned<In>,
    pub kept: Owned<In>,
    /// Its priority in the flow (`Processor::feed_priority`).
    pub priority: usize,
}

/// The waiting inputs, a line per priority, each in feed order (so in id order).
pub(super) struct Backlog<In: Task> {
    lines: Vec<VecDeque<Queued<In>>>,
    len: usize,
}

impl<In: Task> Backlog<In> {
    pub(super) fn new() -> Self {
        Self {
            lines: Vec::new(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Puts `queued` at the back of its priority's line.
    pub(super) fn push(&mut self, queued: Queued<In>) {
        let priority = queued.priority;
        if self.lines.len() <= priority {
            self.lines.resize_with(priority + 1, VecDeque::new);
        }
        self.lines[priority].push_back(queued);
        self.len += 1;
    }

    /// The oldest input of the highest priority.
    pub(super) fn pop_next(&mut self) -> Option<Queued<In>> {
        let next = self.lines.iter_mut().rev().find_map(VecDeque::pop_front)?;
        self.len -= 1;
        Some(next)
    }

    /// Takes out the input `id`, if it is waiting.
    pub(super) fn remove(&mut self, id: u64) -> Option<Queued<In>> {
        let removed = self.lines.iter_mut().find_map(|line| {
            let at = line.binary_search_by_key(&id, |queued| queued.id).ok()?;
            line.remove(at)
        })?;
        self.len -= 1;
        Some(removed)
    }

    /// Takes out every waiting input.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Queued<In>> + '_ {
        self.len = 0;
        self.lines.iter_mut().flat_map(|line| line.drain(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[crate::task(crate = "crate")]
    struct Num {
        n: u64,
    }

    fn queued(id: u64, priority: usize) -> Queued<Num> {
        Queued {
            id,
            task: Owned::new(Num { n: id }),
            kept: Owned::new(Num { n: id }),
            priority,
        }
    }

    fn ids(backlog: &mut Backlog<Num>) -> Vec<u64> {
        std::iter::from_fn(|| backlog.pop_next().map(|queued| queued.id)).collect()
    }

    #[test]
    fn the_oldest_of_the_highest_priority_goes_first() {
        let mut backlog = Backlog::new();
        for (id, priority) in [(0, 0), (1, 2), (2, 1), (3, 2), (4, 0)] {
            backlog.push(queued(id, priority));
        }
        assert_eq!(backlog.len(), 5);
        assert_eq!(ids(&mut backlog), [1, 3, 2, 0, 4]);
        assert!(backlog.is_empty());
    }

    #[test]
    fn an_input_taken_out_is_skipped_and_taken_once() {
        let mut backlog = Backlog::new();
        for (id, priority) in [(0, 0), (1, 1), (2, 0), (3, 0)] {
            backlog.push(queued(id, priority));
        }
        assert_eq!(backlog.remove(2).map(|queued| queued.id), Some(2));
        assert!(backlog.remove(2).is_none(), "taken once");
        assert!(backlog.remove(9).is_none(), "never fed");
        assert_eq!(backlog.len(), 3);
        assert_eq!(ids(&mut backlog), [1, 0, 3]);
    }

    #[test]
    fn draining_takes_everything() {
        let mut backlog = Backlog::new();
        for (id, priority) in [(0, 1), (1, 0)] {
            backlog.push(queued(id, priority));
        }
        let mut drained: Vec<u64> = backlog.drain().map(|queued| queued.id).collect();
        drained.sort_unstable();
        assert_eq!(drained, [0, 1]);
        assert!(backlog.is_empty() && backlog.pop_next().is_none());
    }
}
