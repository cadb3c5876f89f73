//! What a `process` caller awaits once its task was handed to the flow: the answer, the
//! deadline, or the flow's halt, whichever comes first.
//!
//! A future written by hand rather than an `async fn` because it is every call's state,
//! and callers spawn it: tokio copies a spawned future into its task and copies the
//! finished task's output slot out of it, and a glibc allocation above 1 KiB takes the
//! slow path. As `async fn`s, the call (its arguments stored twice, a `select!` over four
//! futures) took 816 bytes; here it is the fields below.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tokio::sync::futures::Notified;
use tokio::sync::oneshot;

use super::control::Control;
use super::direct::Running;
use super::room::InLine;
use crate::metrics::FlowMetrics;
use crate::shm::Owned;
use crate::sync::Counted;
use crate::{Error, Task};

/// A call whose task was handed to the flow (see `Flow::send`).
pub(super) struct Call<'a, Out: Task> {
    pub entering: Entering<'a>,
    /// The first stage's job, if the caller runs it (see `direct`).
    pub job: Running,
    pub receiver: oneshot::Receiver<Result<Owned<Out>, Error>>,
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    /// Counts the call as under way until the call ends (answered, or dropped).
    pub _in_flight: Counted<'a>,
    /// For a call that was the flow's only one as it began: when, and whether its stages
    /// told the next ahead (see `expecting`), which its latency is measured for.
    pub lone: Option<(Instant, bool)>,
}

/// A task on its way into the first stage's queue (see `Flow::enter`).
pub(super) enum Entering<'a> {
    Entered,
    /// The first stage's condition sent the task past it: its hand-over to the stage it
    /// skips to, which may wait for room there (boxed: the rarer case, kept out of every
    /// call's future).
    Waiting(Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>),
    /// The first stage's queue was full: the task stands in its line (see `room`).
    InLine(InLine<'a>),
}

/// What is observed of a call when it ends: the `finished` event and the request metrics.
pub(super) struct Observe<'a> {
    pub span: Option<tracing::Span>,
    /// When the call began; only with the `metrics` feature.
    pub started: Option<Instant>,
    pub metrics: &'a FlowMetrics,
}

impl Observe<'_> {
    fn finished<Out: Task>(&self, outcome: &Result<Owned<Out>, Error>) {
        if let Some(span) = &self.span {
            tracing::debug!(parent: span, outcome = crate::metrics::outcome_label(outcome), "finished");
        }
        if let Some(started) = self.started {
            self.metrics.request(outcome, started.elapsed());
        }
    }
}

pin_project! {
    /// The future `Flow::process` returns.
    pub(crate) struct Answer<'a, Out: Task> {
        state: State<'a, Out>,
        // What wakes the caller at its deadline or the flow's halt (see `deadlines`); set
        // up once the task has entered the flow.
        #[pin]
        watch: Option<Notified<'a>>,
        // The deadline's tick.
        tick: u64,
        control: &'a Control,
        observe: Observe<'a>,
    }
}

/// Where a call is: sent (and awaited), refused before it was sent, or over.
enum State<'a, Out: Task> {
    Sent(Call<'a, Out>),
    Refused(Error),
    Done,
}

impl<'a, Out: Task> Answer<'a, Out> {
    pub(super) fn new(
        sent: Result<Call<'a, Out>, Error>,
        control: &'a Control,
        observe: Observe<'a>,
    ) -> Self {
        Self {
            state: match sent {
                Ok(call) => State::Sent(call),
                Err(error) => State::Refused(error),
            },
            watch: None,
            tick: 0,
            control,
            observe,
        }
    }
}

impl<Out: Task> Future for Answer<'_, Out> {
    type Output = Result<Owned<Out>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let outcome = match this.state {
            State::Sent(call) => {
                let outcome = ready!(poll_call(
                    call,
                    this.watch.as_mut(),
                    this.tick,
                    this.control,
                    cx
                ));
                if let (Some((began, expecting)), Ok(_)) = (call.lone, &outcome) {
                    this.control
                        .expecting()
                        .lone_call_took(expecting, began.elapsed());
                }
                outcome
            }
            State::Refused(_) | State::Done => match std::mem::replace(this.state, State::Done) {
                State::Refused(error) => Err(error),
                _ => panic!("`Answer` polled after it completed"),
            },
        };
        // The call drops here, not with the future: it is no longer in flight.
        *this.state = State::Done;
        this.watch.set(None);
        this.observe.finished(&outcome);
        Poll::Ready(outcome)
    }
}

/// Polls a sent call: entering the queue, then the caller's own job (if any) first, so
/// that when it delivers the answer is there without a wake-up, then the answer, the
/// halt and the deadline.
fn poll_call<'a, Out: Task>(
    call: &mut Call<'_, Out>,
    mut watch: Pin<&mut Option<Notified<'a>>>,
    tick: &mut u64,
    control: &'a Control,
    cx: &mut Context<'_>,
) -> Poll<Result<Owned<Out>, Error>> {
    if let Entering::Waiting(wait) = &mut call.entering {
        ready!(wait.as_mut().poll(cx))?;
        call.entering = Entering::Entered;
    }
    if !call.job.is_done() {
        // Ready or not, the answer is looked at next.
        let _ = Pin::new(&mut call.job).poll(cx);
    }
    if let Poll::Ready(outcome) = Pin::new(&mut call.receiver).poll(cx) {
        // Answered: a task that stood in line went in (or was answered from the line
        // when the flow stopped).
        if let Entering::InLine(in_line) = std::mem::replace(&mut call.entering, Entering::Entered)
        {
            in_line.went_in();
        }
        return Poll::Ready(match outcome {
            Ok(outcome) => outcome,
            // The task was dropped inside the flow: it was halted.
            Err(_) => Err(Error::Stopped),
        });
    }
    let deadlines = control.deadlines();
    loop {
        if watch.is_none() {
            // A deadline already past is not looked for on the clock: its tick has
            // passed (seen below) or will within the millisecond. A task standing in
            // line has the end of its wait for room first.
            let watched = match &call.entering {
                Entering::InLine(in_line) => in_line.until(),
                _ => call.deadline,
            };
            let registered = deadlines.watch(watched);
            *tick = registered.tick;
            watch.set(Some(registered.notified));
        }
        let Some(notified) = watch.as_mut().as_pin_mut() else {
            unreachable!("registered above");
        };
        let woken = notified.poll(cx).is_ready();
        // Looked at after registering: a halt or a tick that came before is seen here,
        // one after wakes the caller.
        if control.is_halted() {
            return Poll::Ready(Err(Error::Stopped));
        }
        if deadlines.has_passed(*tick) {
            let Entering::InLine(in_line) =
                std::mem::replace(&mut call.entering, Entering::Entered)
            else {
                return Poll::Ready(Err(Error::Timeout {
                    after: call.timeout,
                }));
            };
            if let Some(turned_away) = in_line.turned_away() {
                return Poll::Ready(Err(turned_away));
            }
            // It went in meanwhile: now the call's own deadline is watched.
        } else if !woken {
            return Poll::Pending;
        }
        // Woken by an earlier round of the deadline's slot: wait again.
        watch.set(None);
    }
}
