//! One request's trip: publish a dispatch in its lane and wake the worker if it sleeps
//! ([`publish`], synchronous, so requests reach a worker in the order they were made),
//! then wait for the answer, the worker's death or the execution timeout ([`answer`]).

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use tokio::time::{sleep_until, Instant};

use super::channel::*;
use super::supervisor::exited;
use super::{Conn, Shared};
use crate::exec::{poll_within, QUIET_SPIN};
use crate::sync::lock;
use crate::task::TaskField;

/// Why a batch did not come back.
pub(super) enum Failure {
    /// The worker died before picking the batch up: send it to the replacement.
    NotTaken,
    Died(super::Exit),
    TimedOut,
    Violation(String),
}

/// The parent's record of one worker's lanes: the last request number published, and
/// which lanes hold a request whose answer has not been read yet.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    last: u64,
    busy: [bool; MAX_LANES],
}

/// A published request: its lane is the caller's until the ticket is dropped, after
/// the answer was read (or the worker is gone).
pub(super) struct Ticket {
    pub conn: Arc<Conn>,
    pub lane: usize,
    seq: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.conn.lanes).busy[self.lane] = false;
    }
}

/// Waits for the worker's answer to the ticket's request; on success the ticket's lane
/// holds it.
pub(super) async fn answer(shared: &Shared, ticket: &Ticket, quiet: bool) -> Result<(), Failure> {
    let (conn, seq) = (&*ticket.conn, ticket.seq);
    let ctl = &conn.ctl;
    let answered = || ctl.u64(OFF_RESP_SEQ).load(Ordering::Acquire) >= seq;
    if quiet && poll_within(QUIET_SPIN, || answered().then_some(())).is_some() {
        return check_answer(conn);
    }
    let mut deadline = shared.config.exec_timeout.map(|t| Instant::now() + t);
    let mut exit = conn.exit.clone();
    loop {
        // Two dispatches may wait on one worker, and whichever drains its eventfd takes
        // the wake-up from the other: the drainer tells the others through `drained`.
        // Registering before the check means no such word between the two is missed.
        let drained = conn.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if answered() {
            return check_answer(conn);
        }
        tokio::select! {
            () = &mut drained => {}
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
                if answered() {
                    return check_answer(conn);
                }
                return Err(if ctl.u64(OFF_TAKEN_SEQ).load(Ordering::Acquire) < seq {
                    Failure::NotTaken
                } else {
                    Failure::Died(exit)
                });
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if ctl.u64(OFF_TAKEN_SEQ).load(Ordering::Acquire) < seq {
                    // Still queued behind the request the worker runs, which has a
                    // deadline of its own: the clock starts when the worker takes this one.
                    deadline = shared.config.exec_timeout.map(|t| Instant::now() + t);
                    continue;
                }
                return Err(Failure::TimedOut);
            }
        }
    }
}

/// Writes `batch` into a free lane under the next request number and publishes it. There
/// is a free lane: the runner keeps at most `lanes` dispatches outstanding per worker.
pub(super) fn publish<T: TaskField>(
    geometry: Geometry,
    conn: &Arc<Conn>,
    batch: &[T],
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
    let Some(lane) = (0..geometry.lanes).find(|&lane| !lanes.busy[lane]) else {
        return Err(Failure::Violation(
            "aqueduct bug: a dispatch found no free lane on its worker".into(),
        ));
    };
    let seq = lanes.last + 1;
    for (i, task) in batch.iter().enumerate() {
        ctl.write(geometry.request_offset(lane, i), bytemuck::bytes_of(task));
    }
    ctl.write_u32(geometry.req_count_offset(lane), batch.len() as u32);
    ctl.u64(geometry.tag_offset(lane))
        .store(seq, Ordering::Relaxed);
    ctl.u64(OFF_REQ_SEQ).store(seq, Ordering::Release);
    lanes.last = seq;
    lanes.busy[lane] = true;
    drop(lanes);
    fence(Ordering::SeqCst);
    if ctl.u32(OFF_WORKER_WAITING).swap(0, Ordering::SeqCst) != 0 {
        conn.req.notify();
    }
    Ok(Ticket {
        conn: conn.clone(),
        lane,
        seq,
    })
}

/// The worker claims to have answered a request: it may also have answered the one
/// queued behind it, but never one that was not published.
fn check_answer(conn: &Conn) -> Result<(), Failure> {
    let answered = conn.ctl.u64(OFF_RESP_SEQ).load(Ordering::Acquire);
    let published = lock(&conn.lanes).last;
    if answered > published {
        return Err(Failure::Violation(format!(
            "response sequence number {answered} is ahead of the last request's {published}"
        )));
    }
    Ok(())
}
