//! Running a graph (the seed's `run_batch_processors_graph`): feed the staged inputs,
//! then, until no processor has anything queued, in flight or ready, pass every finished
//! result along its node's edges. Only this loop feeds along edges, so "every processor
//! drained" seen here cannot be undone behind its back.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::builder::Graph;
use super::node::RunBook;
use super::processor::not_in_async;
use super::progress::ProgressView;
use super::results::{GraphResults, NodeResults};
use crate::Error;

impl Graph {
    /// Runs the graph: feeds the inputs staged with [`Graph::feed`], passes results along
    /// the edges until nothing is pending anywhere, and returns every processor's result
    /// handles. Results of inputs fed to the processors directly while the run goes on
    /// are collected and passed along too.
    ///
    /// Fails with [`Error::EndlessCycle`] when an edge exceeds the run's limits (see
    /// [`Graph::max_rounds`]), or with the error of an input that could not be fed; every
    /// pending input is then cancelled and the results are dropped. The processors keep
    /// running either way, ready for another run.
    ///
    /// A panic in a converter propagates to the caller.
    pub async fn run(&mut self) -> Result<GraphResults, Error> {
        let started = Instant::now();
        let names: Vec<&str> = self.nodes.iter().map(|node| node.name()).collect();
        let view = ProgressView::new(self.progress, &names);
        self.nodes.iter_mut().for_each(|node| node.reset());
        let mut book = RunBook::new(self.limits);
        match self.drive(&mut book, &view).await {
            Ok(()) => {
                let summaries: Vec<_> = self.nodes.iter().map(|n| n.summary().clone()).collect();
                view.finish(Ok(&summaries));
                let nodes = self
                    .nodes
                    .iter_mut()
                    .map(|node| NodeResults {
                        key: node.key(),
                        handles: node.take_results(),
                    })
                    .collect();
                Ok(GraphResults {
                    nodes,
                    summaries,
                    elapsed: started.elapsed(),
                })
            }
            Err(error) => {
                self.nodes.iter_mut().for_each(|node| node.abort());
                view.finish(Err(&error));
                Err(error)
            }
        }
    }

    /// [`Graph::run`] for code that is not async (the processors should have been
    /// started with `start_blocking`, or on a runtime that keeps running).
    pub fn run_blocking(&mut self) -> Result<GraphResults, Error> {
        not_in_async()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| Error::Config(format!("cannot build a runtime for the run: {e}")))?;
        runtime.block_on(self.run())
    }

    async fn drive(&mut self, book: &mut RunBook, view: &ProgressView) -> Result<(), Error> {
        for node in &mut self.nodes {
            node.feed_staged()?;
        }
        let notifies: Vec<Arc<Notify>> = self.nodes.iter().map(|node| node.notify()).collect();
        loop {
            // Registered before looking, so a change made while routing wakes the wait.
            let mut changes: Vec<Pin<Box<Notified<'_>>>> = notifies
                .iter()
                .map(|notify| Box::pin(notify.notified()))
                .collect();
            for change in &mut changes {
                change.as_mut().enable();
            }
            let mut routed = 0;
            for (index, node) in self.nodes.iter_mut().enumerate() {
                routed += node.route(index, book)?;
                view.update(index, node.summary(), &node.status());
            }
            if routed > 0 {
                continue;
            }
            if self.nodes.iter().all(|node| node.is_drained()) {
                return Ok(());
            }
            any_of(&mut changes).await;
        }
    }
}

/// Resolves when any of `changes` fires.
async fn any_of(changes: &mut [Pin<Box<Notified<'_>>>]) {
    poll_fn(|cx| {
        if changes
            .iter_mut()
            .any(|change| change.as_mut().poll(cx).is_ready())
        {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}
