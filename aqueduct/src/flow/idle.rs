//! A stage's idle seat, lent: while the stage's runner holds a free seat and nothing is
//! queued, a `process` call (at the first stage) or the previous stage's job (at the
//! others) takes the seat itself and hands its task straight to the worker (see
//! [`super::direct`]), instead of queueing it for the runner to wake up, dispatch, and
//! wake the next one again. Two task switches and a queue fewer per stage, on the path
//! a lone request takes.
//!
//! The seat stays the runner's: it offers the seat only while it waits for work, takes
//! it back when work comes, and a caller holding it returns it to the runner's pool if
//! the runner asked for it meanwhile, or leaves it on offer for the next caller if not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::seats::{Home, Seat};
use crate::sync::lock;

/// Where the seat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// With the runner (or in its pool): not on offer.
    Runner,
    /// On offer: the runner waits for work and the next caller may take it.
    Offered(Seat),
    /// A caller runs a task on it; `wanted` once the runner asked for it back.
    Lent { wanted: bool },
}

/// The runner's offer of one seat to callers.
#[derive(Debug)]
pub(super) struct IdleSeat {
    at: Mutex<Where>,
    /// Whether `at` is `Offered`, readable without the lock: a caller under load looks
    /// here first and goes to the queue without writing anything shared.
    offered: AtomicBool,
}

impl IdleSeat {
    pub(super) fn new() -> Self {
        Self {
            at: Mutex::new(Where::Runner),
            offered: AtomicBool::new(false),
        }
    }

    /// Moves the seat to `to`, keeping `offered` in step (under the lock).
    fn set(&self, at: &mut Where, to: Where) {
        *at = to;
        self.offered
            .store(matches!(to, Where::Offered(_)), Ordering::Relaxed);
    }

    /// Whether a seat is on offer now, as a hint: [`IdleSeat::take`] decides.
    pub(super) fn is_offered(&self) -> bool {
        self.offered.load(Ordering::Relaxed)
    }

    /// The worker of the seat on offer, if one is: the worker a lone task reaching the
    /// stage now would go to. No lock is taken while nothing is on offer (a busy stage).
    pub(super) fn offered_worker(&self) -> Option<usize> {
        if !self.is_offered() {
            return None;
        }
        match *lock(&self.at) {
            Where::Offered(seat) => Some(seat.worker),
            Where::Runner | Where::Lent { .. } => None,
        }
    }

    /// Runner: offers `seat` while it waits for work. Given back if a seat is already
    /// out (lent to a caller, not yet returned).
    pub(super) fn offer(&self, seat: Seat) -> Result<(), Seat> {
        let mut at = lock(&self.at);
        if *at != Where::Runner {
            return Err(seat);
        }
        self.set(&mut at, Where::Offered(seat));
        Ok(())
    }

    /// Runner: takes back the seat it offered, now that work came. `None` if a caller
    /// holds it: the caller will put it in the runner's pool when done.
    pub(super) fn reclaim(&self) -> Option<Seat> {
        let mut at = lock(&self.at);
        match *at {
            Where::Offered(seat) => {
                self.set(&mut at, Where::Runner);
                Some(seat)
            }
            Where::Lent { .. } => {
                self.set(&mut at, Where::Lent { wanted: true });
                None
            }
            Where::Runner => None,
        }
    }

    /// Caller: takes the seat on offer, if there is one.
    pub(super) fn take(&self) -> Option<Seat> {
        let mut at = lock(&self.at);
        let Where::Offered(seat) = *at else {
            return None;
        };
        self.set(&mut at, Where::Lent { wanted: false });
        Some(seat)
    }

    /// Caller: done with `seat` (taken with [`IdleSeat::take`]). It goes to the
    /// runner's pool if the runner asked for it, and back on offer if not.
    pub(super) fn give_back(&self, seat: Seat, home: &Home) {
        let mut at = lock(&self.at);
        if *at == (Where::Lent { wanted: false }) {
            self.set(&mut at, Where::Offered(seat));
        } else {
            self.set(&mut at, Where::Runner);
            drop(at);
            home.put(seat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::seats::Seats;
    use super::*;

    const SEAT: Seat = Seat {
        worker: 0,
        behind: false,
    };

    #[tokio::test]
    async fn an_offered_seat_goes_to_one_caller_and_back_on_offer() {
        let seats = Seats::new(1);
        let idle = IdleSeat::new();
        assert!(!idle.is_offered());
        idle.offer(SEAT).unwrap();
        assert!(idle.is_offered());
        let seat = idle.take().expect("on offer");
        assert!(!idle.is_offered(), "lent: callers go to the queue");
        assert!(idle.take().is_none(), "lent to one caller at a time");
        idle.give_back(seat, &seats.home());
        assert!(idle.is_offered());
        assert!(idle.take().is_some(), "back on offer for the next caller");
    }

    #[tokio::test]
    async fn a_seat_the_runner_asked_for_goes_to_its_pool() {
        let seats = Seats::new(1);
        let idle = IdleSeat::new();
        idle.offer(SEAT).unwrap();
        let seat = idle.take().unwrap();
        assert!(idle.reclaim().is_none(), "a caller holds it");
        assert!(idle.offer(SEAT).is_err(), "one seat out at a time");
        idle.give_back(seat, &seats.home());
        assert!(idle.take().is_none(), "not on offer any more");
        assert!(!idle.is_offered());
        assert!(seats.take().await.is_some(), "in the runner's pool");
        idle.offer(SEAT).expect("the runner may offer again");
        assert!(idle.reclaim().is_some());
        assert!(!idle.is_offered(), "reclaimed: not on offer");
    }
}
