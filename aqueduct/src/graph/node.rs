//! A graph node: one processor, its outgoing edges, and what a run collects from it,
//! behind the [`Node`] trait so one graph can hold processors of different task types.
//! Edges keep their converters typed: each is a closure over the destination processor,
//! checked against it when `Graph::connect` is compiled.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use super::handle::ResultHandle;
use super::processor::Processor;
use super::results::ProcessorSummary;
use super::status::ProcessorStatus;
use crate::shm::Owned;
use crate::{Error, Task};

/// The run's guard against endless cycles, shared by every edge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How often one initial input's descendants may pass along an edge.
    pub max_rounds: u64,
    /// How many inputs one edge may feed in one run.
    pub max_edge_items: Option<u64>,
}

/// What one run tracks across nodes: how many edges each pending input's ancestry has
/// passed (absent means 0: an initial input, or one fed from outside the graph).
#[derive(Debug)]
pub(crate) struct RunBook {
    limits: Limits,
    rounds: HashMap<(usize, u64), u64>,
}

impl RunBook {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            rounds: HashMap::new(),
        }
    }
}

/// A typed converter plus the feeding into its destination.
type Convert<In, Out> =
    Box<dyn FnMut(&ResultHandle<In, Out>, &mut Delivery<'_>) -> Result<(), Error> + Send>;

/// An edge out of a node whose processor takes `In` and emits `Out`.
pub(crate) struct Edge<In: Task, Out: Task> {
    dst: usize,
    label: String,
    fed: u64,
    convert: Convert<In, Out>,
}

impl<In: Task, Out: Task> Edge<In, Out> {
    /// An edge to node `dst` (named `label`) that converts each result with `converter`
    /// and feeds what it returns to `to`.
    pub(crate) fn new<C, D, F, I>(
        dst: usize,
        label: String,
        to: Processor<C, D>,
        mut converter: F,
    ) -> Self
    where
        C: Task,
        D: Task,
        F: FnMut(&ResultHandle<In, Out>) -> I + Send + 'static,
        I: IntoIterator<Item = C>,
    {
        let convert = move |handle: &ResultHandle<In, Out>, delivery: &mut Delivery<'_>| {
            // A converter's items own their shared memory (see `ResultHandle::output_owned`).
            let mut items = converter(handle).into_iter().map(Owned::new);
            while let Some(item) = items.next() {
                if let Err(error) = delivery.feed(&to, item) {
                    // The items not fed are dropped, with their memory.
                    items.for_each(drop);
                    return Err(error);
                }
            }
            Ok(())
        };
        Self {
            dst,
            label,
            fed: 0,
            convert: Box::new(convert),
        }
    }
}

/// Feeds a converter's items to the edge's destination, enforcing the run's limits and
/// recording how far each new input's ancestry has come.
pub(crate) struct Delivery<'a> {
    book: &'a mut RunBook,
    dst: usize,
    rounds: u64,
    label: &'a str,
    fed: &'a mut u64,
}

impl Delivery<'_> {
    fn feed<C: Task, D: Task>(
        &mut self,
        to: &Processor<C, D>,
        item: Owned<C>,
    ) -> Result<(), Error> {
        let limits = self.book.limits;
        let exceeded = if self.rounds > limits.max_rounds {
            Some((limits.max_rounds, "rounds"))
        } else {
            limits
                .max_edge_items
                .filter(|limit| *self.fed >= *limit)
                .map(|limit| (limit, "items"))
        };
        if let Some((limit, what)) = exceeded {
            return Err(Error::EndlessCycle {
                edge: self.label.to_string(),
                limit,
                what,
            });
        }
        let id = to.feed_owned(item)?;
        *self.fed += 1;
        self.book.rounds.insert((self.dst, id.get()), self.rounds);
        Ok(())
    }
}

/// A node as the graph and its runs see it, whatever its task types.
pub(crate) trait Node: Send {
    /// The processor's identity.
    fn key(&self) -> u64;
    fn name(&self) -> &str;
    /// Notified whenever the processor's queues change.
    fn notify(&self) -> Arc<Notify>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Clears what a previous run left: collected results, counters.
    fn reset(&mut self);
    /// Feeds the inputs staged with `Graph::feed`.
    fn feed_staged(&mut self) -> Result<(), Error>;
    /// Takes every finished result, passes it along every outgoing edge and keeps it;
    /// returns how many there were.
    fn route(&mut self, index: usize, book: &mut RunBook) -> Result<usize, Error>;
    /// Nothing queued, in flight or ready.
    fn is_drained(&self) -> bool;
    fn status(&self) -> ProcessorStatus;
    fn summary(&self) -> &ProcessorSummary;
    /// Cancels everything pending and drops results: the run failed.
    fn abort(&mut self);
    /// The collected results, as a `Vec<ResultHandle<In, Out>>`.
    fn take_results(&mut self) -> Box<dyn Any + Send>;
}

/// The node of a processor taking `In` and emitting `Out`.
pub(crate) struct TypedNode<In: Task, Out: Task> {
    processor: Processor<In, Out>,
    pub edges: Vec<Edge<In, Out>>,
    pub staged: Vec<Owned<In>>,
    collected: Vec<ResultHandle<In, Out>>,
    summary: ProcessorSummary,
}

impl<In: Task, Out: Task> TypedNode<In, Out> {
    pub(crate) fn new(processor: Processor<In, Out>) -> Self {
        let summary = ProcessorSummary::new(processor.name());
        Self {
            processor,
            edges: Vec::new(),
            staged: Vec::new(),
            collected: Vec::new(),
            summary,
        }
    }
}

impl<In: Task, Out: Task> Node for TypedNode<In, Out> {
    fn key(&self) -> u64 {
        self.processor.shared().key
    }

    fn name(&self) -> &str {
        self.processor.name()
    }

    fn notify(&self) -> Arc<Notify> {
        self.processor.shared().notify.clone()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn reset(&mut self) {
        self.collected.clear();
        self.summary = ProcessorSummary::new(self.processor.name());
        self.edges.iter_mut().for_each(|edge| edge.fed = 0);
    }

    fn feed_staged(&mut self) -> Result<(), Error> {
        // On a failure the inputs not yet fed are dropped with the iterator, releasing
        // their shared memory.
        for input in std::mem::take(&mut self.staged) {
            self.processor.feed_owned(input)?;
        }
        Ok(())
    }

    fn route(&mut self, index: usize, book: &mut RunBook) -> Result<usize, Error> {
        let ready = self.processor.take_ready();
        let count = ready.len();
        for handle in ready {
            let rounds = book.rounds.remove(&(index, handle.id().get())).unwrap_or(0);
            for edge in &mut self.edges {
                let Edge {
                    dst,
                    label,
                    fed,
                    convert,
                } = edge;
                let mut delivery = Delivery {
                    book: &mut *book,
                    dst: *dst,
                    rounds: rounds + 1,
                    label,
                    fed,
                };
                convert(&handle, &mut delivery)?;
            }
            self.summary.count(&handle);
            self.collected.push(handle);
        }
        Ok(count)
    }

    fn is_drained(&self) -> bool {
        self.processor.shared().is_drained()
    }

    fn status(&self) -> ProcessorStatus {
        self.processor.status()
    }

    fn summary(&self) -> &ProcessorSummary {
        &self.summary
    }

    fn abort(&mut self) {
        self.processor.cancel_all();
        drop(self.processor.take_ready());
        self.collected.clear();
        self.staged.clear();
    }

    fn take_results(&mut self) -> Box<dyn Any + Send> {
        Box::new(std::mem::take(&mut self.collected))
    }
}
