//! Assembling a graph: the seed's `BatchProcessorsGraph` with `add_processor` and
//! `add_connected_processors`, plus the initial inputs and the run's limits.

use std::collections::HashMap;
use std::fmt;

use super::handle::ResultHandle;
use super::node::{Edge, Limits, Node, TypedNode};
use super::processor::Processor;
use super::progress::Progress;
use crate::shm::Owned;
use crate::Task;

/// A dataflow graph of processors: converters turn one processor's results into another
/// processor's inputs. Cycles are allowed; a run ends when nothing is pending anywhere.
///
/// ```no_run
/// # #[aqueduct::task] struct Num { n: u64 }
/// # #[aqueduct::handler] fn double(item: &mut Num) { item.n *= 2 }
/// # #[aqueduct::handler] fn square(item: &mut Num) { item.n *= item.n }
/// # async fn demo() -> Result<(), aqueduct::Error> {
/// use aqueduct::graph::{Graph, Processor};
///
/// let doubler = Processor::of::<double>().start().await?;
/// let squarer = Processor::of::<square>().start().await?;
/// let mut graph = Graph::new();
/// graph
///     .connect(&doubler, &squarer, |done| done.output_owned().ok())
///     .feed(&doubler, (1..=10).map(|n| Num { n }));
/// let mut results = graph.run().await?;
/// for done in results.take(&squarer) {
///     println!("{:?}", done.result().map(|out| out.n));
/// }
/// # Ok(()) }
/// ```
pub struct Graph {
    pub(crate) nodes: Vec<Box<dyn Node>>,
    index: HashMap<u64, usize>,
    pub(crate) limits: Limits,
    pub(crate) progress: Progress,
}

/// How often one initial input's descendants may go round by default: far more than any
/// intended retry loop, few enough to stop a runaway cycle quickly.
pub const DEFAULT_MAX_ROUNDS: u64 = 1000;

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.nodes.iter().map(|node| node.name()).collect();
        f.debug_struct("Graph")
            .field("processors", &names)
            .field("limits", &self.limits)
            .field("progress", &self.progress)
            .finish()
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            index: HashMap::new(),
            limits: Limits {
                max_rounds: DEFAULT_MAX_ROUNDS,
                max_edge_items: None,
            },
            progress: Progress::Auto,
        }
    }

    /// Adds `processor` as a node; adding the same processor (or a clone) again keeps
    /// the one node.
    pub fn add<In: Task, Out: Task>(&mut self, processor: &Processor<In, Out>) -> &mut Self {
        self.node_of(processor);
        self
    }

    /// Connects `source` to `destination` (adding either if missing): every result of
    /// `source` (done, failed or cancelled) goes through `converter`, and the inputs it
    /// returns are fed to `destination`. Connect one source to several destinations to
    /// fan out (each gets its own conversion), several sources to one destination to fan
    /// in. A source may be its own destination.
    ///
    /// The returned inputs' shared memory passes to `destination`: build them from
    /// [`ResultHandle::output_owned`] / [`ResultHandle::input_owned`], not from copies
    /// of the borrowed handle's tasks.
    ///
    /// The converter's item type must be the destination's input type, at compile time:
    ///
    /// ```compile_fail
    /// # #[aqueduct::task] struct Celsius { degrees: f64 }
    /// # #[aqueduct::task] struct Kelvin { degrees: f64 }
    /// # #[aqueduct::handler] fn measure(t: &mut Celsius) {}
    /// # #[aqueduct::handler] fn record(t: &mut Kelvin) {}
    /// # async fn demo() -> Result<(), aqueduct::Error> {
    /// use aqueduct::graph::{Graph, Processor};
    /// let source = Processor::of::<measure>().start().await?;
    /// let destination = Processor::of::<record>().start().await?;
    /// // `record` takes `Kelvin`, the converter returns `Celsius`: rejected.
    /// Graph::new().connect(&source, &destination, |done| done.output_owned().ok());
    /// # Ok(()) }
    /// ```
    pub fn connect<A, B, C, D, F, I>(
        &mut self,
        source: &Processor<A, B>,
        destination: &Processor<C, D>,
        converter: F,
    ) -> &mut Self
    where
        A: Task,
        B: Task,
        C: Task,
        D: Task,
        F: FnMut(&ResultHandle<A, B>) -> I + Send + 'static,
        I: IntoIterator<Item = C>,
    {
        // Source first, so nodes are listed (in results too) in the order data flows.
        self.index_of(source);
        let dst = self.index_of(destination);
        let label = format!("{} -> {}", source.name(), destination.name());
        let edge = Edge::new(dst, label, destination.clone(), converter);
        self.node_of(source).edges.push(edge);
        self
    }

    /// Stages initial inputs for `processor` (adding it if missing); the next run feeds
    /// them. Their shared memory passes to the graph.
    pub fn feed<In: Task, Out: Task>(
        &mut self,
        processor: &Processor<In, Out>,
        inputs: impl IntoIterator<Item = In>,
    ) -> &mut Self {
        let node = self.node_of(processor);
        node.staged.extend(inputs.into_iter().map(Owned::new));
        self
    }

    /// Stops a run with [`crate::Error::EndlessCycle`] when one initial input's
    /// descendants have passed along more than `rounds` edges (default
    /// [`DEFAULT_MAX_ROUNDS`]).
    pub fn max_rounds(&mut self, rounds: u64) -> &mut Self {
        self.limits.max_rounds = rounds;
        self
    }

    /// Stops a run with [`crate::Error::EndlessCycle`] when one edge has fed more than
    /// `items` inputs in it (no limit unless set).
    pub fn max_edge_items(&mut self, items: u64) -> &mut Self {
        self.limits.max_edge_items = Some(items);
        self
    }

    /// What runs print on stderr (default [`Progress::Auto`]).
    pub fn progress(&mut self, progress: Progress) -> &mut Self {
        self.progress = progress;
        self
    }

    /// Number of processors.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// No processors.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `processor` is a node of this graph.
    pub fn contains<In: Task, Out: Task>(&self, processor: &Processor<In, Out>) -> bool {
        self.index.contains_key(&processor.shared().key)
    }

    /// The position of `processor`'s node, added if missing.
    fn index_of<In: Task, Out: Task>(&mut self, processor: &Processor<In, Out>) -> usize {
        let key = processor.shared().key;
        if let Some(&at) = self.index.get(&key) {
            return at;
        }
        self.nodes.push(Box::new(TypedNode::new(processor.clone())));
        self.index.insert(key, self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// The node of `processor`, added if missing.
    fn node_of<In: Task, Out: Task>(
        &mut self,
        processor: &Processor<In, Out>,
    ) -> &mut TypedNode<In, Out> {
        let at = self.index_of(processor);
        self.nodes[at]
            .as_any_mut()
            .downcast_mut()
            .expect("a processor's key always names a node of its own types")
    }
}
