//! A flow as a `tower::Service` (feature `tower`), so tower's middleware (`load_shed`,
//! `timeout`, `concurrency_limit`, `buffer`, ...) and the servers built on it (axum,
//! tonic) compose with a flow.
//!
//! Readiness is the first stage's free room, reported without reserving it: a slot held
//! by one clone between `poll_ready` and `call` would starve every other clone (the
//! pitfall of tower#547). So `call` after a ready `poll_ready` may still find the queue
//! full, and then does what `process` does (waits, or rejects with
//! [`Error::Overloaded`] if the flow rejects when full).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;

use super::handle::{Flow, FlowState};
use crate::shm::Owned;
use crate::{Error, Task};

/// A pending wait for room in the first stage (or for the flow to stop).
type ReadyWait = Pin<Box<OwnedNotified>>;

/// The response future of [`FlowService`]: `process`'s result.
pub type FlowFuture<Out> = Pin<Box<dyn Future<Output = Result<Owned<Out>, Error>> + Send>>;

/// A [`Flow`] as a `tower::Service<In>`: [`Flow::into_service`]. Each clone waits for
/// readiness on its own; none reserves room. Dropping a response future drops the call,
/// which cancels a task still queued (see [`Flow::process`]).
pub struct FlowService<In: Task, Out: Task> {
    flow: Flow<In, Out>,
    wait: Option<ReadyWait>,
}

impl<In: Task, Out: Task> Flow<In, Out> {
    /// This flow as a `tower::Service`, whose requests are `process` calls.
    pub fn into_service(self) -> FlowService<In, Out> {
        FlowService {
            flow: self,
            wait: None,
        }
    }
}

impl<In: Task, Out: Task> Clone for FlowService<In, Out> {
    fn clone(&self) -> Self {
        self.flow.clone().into_service()
    }
}

impl<In: Task, Out: Task> std::fmt::Debug for FlowService<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowService")
            .field("flow", &self.flow)
            .field("waiting", &self.wait.is_some())
            .finish()
    }
}

impl<In: Task, Out: Task> tower_service::Service<In> for FlowService<In, Out> {
    type Response = Owned<Out>;
    type Error = Error;
    type Future = FlowFuture<Out>;

    /// Ready while the first stage's queue has room; [`Error::NotRunning`] once the flow
    /// is stopping.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.flow.state() != FlowState::Running {
                self.wait = None;
                return Poll::Ready(Err(Error::NotRunning));
            }
            // Room now, the common case: ready, with nothing to register.
            if self.wait.is_none() && self.flow.has_room() {
                return Poll::Ready(Ok(()));
            }
            // The wait is registered (polled) before room is checked, so room made in
            // between wakes it.
            let registered = match &mut self.wait {
                Some(wait) => wait.as_mut().poll(cx).is_pending(),
                None => {
                    self.wait = Some(Box::pin(self.flow.room_made()));
                    continue;
                }
            };
            if self.flow.has_room() {
                self.wait = None;
                // Woken by room, and some is left: the next waiter may take it.
                if !registered {
                    self.flow.pass_room_on();
                }
                return Poll::Ready(Ok(()));
            }
            if registered {
                // A stop that began before this wait was registered woke nobody here.
                if self.flow.state() != FlowState::Running {
                    continue;
                }
                return Poll::Pending;
            }
            // Woken, but the room is gone again: wait anew.
            self.wait = None;
        }
    }

    fn call(&mut self, task: In) -> Self::Future {
        let flow = self.flow.clone();
        Box::pin(async move { flow.process(task).await })
    }
}
