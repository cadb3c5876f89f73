//! One request's trip: publish a dispatch in its lane and wake the worker if it sleeps
//! ([`publish`], synchronous, so requests reach a worker in the order they were made),
//! then wait for the answer, the worker's death or a timeout ([`answer`]).
//!
//! Every request has a bounded time to be taken and, with `exec_timeout`, to be
//! answered. Both clocks start when the request became the worker's next one by the
//! parent's own records (published, with no older request of the worker unanswered),
//! never by a word the worker writes: a worker that stops taking requests, whatever its
//! control region says, is killed after the take timeout.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use tokio::time::{sleep_until, Instant};

use super::supervisor::{exited, kill_and_wait};
use super::wire::{self, Geometry, Taken, MAX_LANES};
use super::{Conn, Exit, Shared};
use crate::exec::{look_between_tasks, poll_within, Wait, QUIET_SPIN};
use crate::metrics::RestartCause;
use crate::platform::clock;
use crate::sync::{lock, Counted};
use crate::task::TaskField;

/// How often a parent waiting for an answer looks without being woken: the worker
/// signals only a parent that announced its sleep, and a stray write in the worker could
/// erase the announcement. Long enough to cost nothing, short enough that a lost wake-up
/// is a delay, not a wedged stage.
const WAKE_BACKSTOP: std::time::Duration = std::time::Duration::from_millis(50);

/// Why a batch did not come back.
pub(super) enum Failure {
    /// The worker is gone and provably never took the batch: it may be sent again.
    NotTaken,
    /// The worker died while it held the batch.
    Died(Exit),
    /// The batch ran past the stage's execution timeout.
    TimedOut,
    /// The worker broke the protocol.
    Violation(String),
    /// The worker's answer broke the protocol: some of its results may still be valid.
    Answer(String),
}

/// The parent's record of one worker's lanes.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    /// The request each lane holds until its answer was read (or the worker is gone).
    held: [Option<u64>; MAX_LANES],
    /// When a lane was last freed: from then on, the request behind it was the worker's
    /// next one.
    freed_at: Option<Instant>,
}

/// A published request: its lane is the caller's until the ticket is dropped, after
/// the answer was read (or the worker is gone).
pub(super) struct Ticket {
    pub conn: Arc<Conn>,
    pub lane: usize,
    pub seq: u64,
    published_at: Instant,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lanes = lock(&self.conn.lanes);
        lanes.held[self.lane] = None;
        // Only a request still held becomes the worker's next one now; a request published
        // later starts its clocks at its own publication, later than any time read here.
        // So the clock is read only when it matters.
        if lanes.held.iter().any(Option::is_some) {
            lanes.freed_at = Some(Instant::now());
        }
        drop(lanes);
        // A dispatch that starts watching after this load registered for `freed` before
        // it locks `lanes` to read its clocks, so it sees the lane freed (the lock orders
        // the two); one that started before is counted here.
        if self.conn.freed_watchers.load(Ordering::SeqCst) != 0 {
            self.conn.freed.notify_waiters();
        }
    }
}

impl Ticket {
    /// Since when the worker has had nothing older to run than this request (by the
    /// parent's records); `None` while an older request of the worker is unanswered.
    fn next_since(&self) -> Option<Instant> {
        let lanes = lock(&self.conn.lanes);
        let older = lanes.held.iter().flatten().any(|&seq| seq < self.seq);
        (!older).then(|| {
            lanes
                .freed_at
                .map_or(self.published_at, |freed| freed.max(self.published_at))
        })
    }
}

/// Waits until the worker says it answered the ticket's request (which the caller then
/// validates), or fails. Looks first as `wait` says; while the parent looks it has not
/// announced a sleep, so a worker that answers meanwhile signals nothing.
pub(super) async fn answer(shared: &Shared, ticket: &Ticket, wait: Wait) -> Result<(), Failure> {
    let (ctl, geometry) = (&ticket.conn.ctl, &shared.geometry);
    let answered = || wire::answered(ctl, geometry, ticket.lane, ticket.seq);
    let early = match wait {
        Wait::Spin => poll_within(QUIET_SPIN, || answered().then_some(())).is_some(),
        Wait::Look => answered() || look_between_tasks(answered).await,
        Wait::Sleep => false,
    };
    if early {
        return Ok(());
    }
    // Boxed: the sleeping wait holds many futures at once, and every dispatch's future
    // (a caller's, in a quiet flow) would otherwise carry their room.
    Box::pin(sleep_until_answered(shared, ticket)).await
}

/// [`answer`] once polling is over: sleeps until the worker's eventfd, a freed lane, the
/// worker's death or a deadline says to look again.
async fn sleep_until_answered(shared: &Shared, ticket: &Ticket) -> Result<(), Failure> {
    let (conn, seq) = (&*ticket.conn, ticket.seq);
    let (ctl, geometry) = (&conn.ctl, &shared.geometry);
    let mut exit = conn.exit.clone();
    // Counted as watching `freed` while it sleeps (see the ticket's drop).
    let _watching = Counted::new(&conn.freed_watchers);
    loop {
        // Two dispatches may wait on one worker, and whichever drains its eventfd takes
        // the wake-up from the other: the drainer tells the others through `drained`.
        // Registering before the check means no such word between the two is missed;
        // likewise `freed`, which starts this request's clocks.
        let drained = conn.drained.notified();
        let freed = conn.freed.notified();
        tokio::pin!(drained, freed);
        drained.as_mut().enable();
        freed.as_mut().enable();
        wire::announce_parent_sleep(ctl);
        if wire::answered(ctl, geometry, ticket.lane, seq) {
            return Ok(());
        }
        let clocks = Clocks::of(shared, ticket);
        // One timer: the next deadline, or the backstop look (a stray write by the worker
        // may have cleared the announcement above), whichever is first.
        let backstop = Instant::now() + WAKE_BACKSTOP;
        let wake = clocks.next().map_or(backstop, |next| next.min(backstop));
        tokio::select! {
            () = &mut drained => {}
            () = &mut freed => {}
            readable = conn.resp.readable() => match readable {
                Ok(mut guard) => {
                    if guard.get_inner().drain().is_ok() {
                        conn.drained.notify_waiters();
                    } else {
                        guard.clear_ready();
                    }
                }
                Err(e) => return Err(Failure::Violation(format!("cannot wait on the worker: {e}"))),
            },
            exit = exited(&mut exit) => {
                // A response published just before dying still counts.
                if wire::answered(ctl, geometry, ticket.lane, seq) {
                    return Ok(());
                }
                return Err(match wire::taken(ctl, geometry, ticket.lane, seq) {
                    Taken::No => Failure::NotTaken,
                    Taken::Yes | Taken::Unsure => Failure::Died(exit),
                });
            }
            () = sleep_until(wake) => {
                if wire::answered(ctl, geometry, ticket.lane, seq) {
                    return Ok(());
                }
                let now = Instant::now();
                if clocks.take.is_some_and(|take| take <= now) {
                    // Wedged: it had nothing older to run and did not take this one.
                    // Once it is dead its words are final; if they agree that it never
                    // took the request, the request may go elsewhere.
                    Box::pin(kill_and_wait(conn, RestartCause::Unresponsive)).await;
                    return Err(match wire::taken(ctl, geometry, ticket.lane, seq) {
                        Taken::No => Failure::NotTaken,
                        Taken::Yes | Taken::Unsure => Failure::Violation(format!(
                            "it did not take request {seq} within {:?} although it had \
                             nothing older to run",
                            shared.config.take_timeout
                        )),
                    });
                }
                if clocks.exec.is_some_and(|exec| exec <= now) {
                    return Err(Failure::TimedOut);
                }
            }
        }
    }
}

/// A request's deadlines, once it is the worker's next one.
struct Clocks {
    /// To be taken (only while the worker's words do not agree that it was).
    take: Option<Instant>,
    /// To be answered (the stage's execution timeout).
    exec: Option<Instant>,
}

impl Clocks {
    fn of(shared: &Shared, ticket: &Ticket) -> Self {
        let Some(since) = ticket.next_since() else {
            return Self {
                take: None,
                exec: None,
            };
        };
        let taken = wire::taken(&ticket.conn.ctl, &shared.geometry, ticket.lane, ticket.seq);
        Self {
            take: (taken != Taken::Yes).then(|| clock::deadline(since, shared.config.take_timeout)),
            exec: shared
                .config
                .exec_timeout
                .map(|limit| clock::deadline(since, limit)),
        }
    }

    fn next(&self) -> Option<Instant> {
        self.take.into_iter().chain(self.exec).min()
    }
}

/// Writes `batch` into a free lane under the next request number and publishes it. There
/// is a free lane: the runner keeps at most `lanes` dispatches outstanding per worker.
/// The batch's `span` is lent to the worker's log book first, so that it is there when
/// the worker's first line about the request arrives.
pub(super) fn publish<T: TaskField>(
    geometry: Geometry,
    conn: &Arc<Conn>,
    batch: &[T],
    span: tracing::Span,
    sent: Instant,
) -> Result<Ticket, Failure> {
    if batch.is_empty() || batch.len() > geometry.batch_cap {
        return Err(Failure::Violation(format!(
            "aqueduct bug: a dispatch of {} tasks does not fit the worker's {} request slots",
            batch.len(),
            geometry.batch_cap
        )));
    }
    let ctl = &conn.ctl;
    // Held while the lane is written, so that two dispatches to the same worker from
    // different threads publish whole lanes in number order.
    let mut lanes = lock(&conn.lanes);
    let Some(lane) = (0..geometry.lanes).find(|&lane| lanes.held[lane].is_none()) else {
        return Err(Failure::Violation(
            "aqueduct bug: a dispatch found no free lane on its worker".into(),
        ));
    };
    // Written only under the `lanes` lock, held here.
    let seq = conn.last_published.load(Ordering::Relaxed) + 1;
    conn.spans.lend(seq, span);
    let published_ns = clock::monotonic_ns_at(sent.into_std());
    // Counted as published before the worker can see it: an answer read with this
    // number in `resp_seq` then also finds it here (Release, paired with the Acquire in
    // `wire::check_answer`, through the worker's reading of `req_seq`).
    conn.last_published.store(seq, Ordering::Release);
    wire::write_request(
        ctl,
        &geometry,
        lane,
        seq,
        bytemuck::cast_slice(batch),
        published_ns,
    );
    lanes.held[lane] = Some(seq);
    drop(lanes);
    fence(Ordering::SeqCst);
    if ctl.header().worker_waiting.swap(0, Ordering::SeqCst) != 0 {
        conn.req.notify();
    }
    Ok(Ticket {
        conn: conn.clone(),
        lane,
        seq,
        published_at: sent,
    })
}
