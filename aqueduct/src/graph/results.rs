//! What a graph run returns: per processor, its result handles and a summary line (the
//! seed's "processor -> list of result handles" dictionary, typed by the processor).

use std::any::Any;
use std::fmt;
use std::time::Duration;

use super::handle::ResultHandle;
use super::processor::Processor;
use crate::Task;

/// How the inputs of one processor ended in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSummary {
    /// The processor's name.
    pub name: String,
    /// Inputs that finished in the run (all of them, once a run has completed).
    pub inputs: u64,
    /// Processed successfully.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl ProcessorSummary {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            inputs: 0,
            ok: 0,
            failed: 0,
            cancelled: 0,
        }
    }

    pub(crate) fn count<In: Task, Out: Task>(&mut self, handle: &ResultHandle<In, Out>) {
        self.inputs += 1;
        if handle.is_ok() {
            self.ok += 1;
        } else if handle.is_cancelled() {
            self.cancelled += 1;
        } else {
            self.failed += 1;
        }
    }
}

impl fmt::Display for ProcessorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: inputs={} ok={} failed={} cancelled={}",
            self.name, self.inputs, self.ok, self.failed, self.cancelled
        )
    }
}

/// One processor's part of a run's results.
pub(crate) struct NodeResults {
    pub key: u64,
    /// A `Vec<ResultHandle<In, Out>>` for the processor's types.
    pub handles: Box<dyn Any + Send>,
}

/// The results of a graph run, per processor, in the order the processors were added.
pub struct GraphResults {
    pub(crate) nodes: Vec<NodeResults>,
    pub(crate) summaries: Vec<ProcessorSummary>,
    pub(crate) elapsed: Duration,
}

impl GraphResults {
    fn position(&self, key: u64) -> Option<usize> {
        self.nodes.iter().position(|node| node.key == key)
    }

    /// The result handles of `processor`, in the order they finished (feed order for a
    /// sequential processor); empty if it is not in the graph or its results were taken.
    pub fn handles<In: Task, Out: Task>(
        &self,
        processor: &Processor<In, Out>,
    ) -> &[ResultHandle<In, Out>] {
        self.position(processor.shared().key)
            .and_then(|at| self.nodes[at].handles.downcast_ref::<Vec<_>>())
            .map_or(&[], Vec::as_slice)
    }

    /// Takes the result handles of `processor` out of the results.
    pub fn take<In: Task, Out: Task>(
        &mut self,
        processor: &Processor<In, Out>,
    ) -> Vec<ResultHandle<In, Out>> {
        self.position(processor.shared().key)
            .and_then(|at| self.nodes[at].handles.downcast_mut::<Vec<_>>())
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The summary of `processor`, if it is in the graph.
    pub fn summary<In: Task, Out: Task>(
        &self,
        processor: &Processor<In, Out>,
    ) -> Option<&ProcessorSummary> {
        self.position(processor.shared().key)
            .map(|at| &self.summaries[at])
    }

    /// Every processor's summary, in the order they were added to the graph.
    pub fn summaries(&self) -> &[ProcessorSummary] {
        &self.summaries
    }

    /// How long the run took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// One summary per line.
impl fmt::Display for GraphResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for summary in &self.summaries {
            writeln!(f, "{summary}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GraphResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphResults")
            .field("summaries", &self.summaries)
            .field("elapsed", &self.elapsed)
            .finish_non_exhaustive()
    }
}
