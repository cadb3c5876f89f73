//! What a graph run shows on stderr: a live bar per processor while it runs (only when
//! stderr is a terminal, so logs and CI output stay clean) and one summary line at the
//! end. Drawing, rate limiting and terminal handling are `indicatif`'s. While the bars
//! are drawn, the library's own lines go above them ([`crate::console`]).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::results::ProcessorSummary;
use super::status::ProcessorStatus;
use crate::console::{self, Drawing};
use crate::Error;

/// What a graph run prints on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A live display per processor (done, failed, in flight, throughput) when stderr is
    /// a terminal, and a summary line at the end in any case.
    #[default]
    Auto,
    /// No live display; the summary line at the end.
    SummaryOnly,
    /// Nothing.
    Silent,
}

const TEMPLATE: &str = "{prefix:>16.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg}";
const REDRAWS_PER_SECOND: u8 = 10;

/// The display of one run.
pub(crate) struct ProgressView {
    live: Option<(MultiProgress, Vec<ProgressBar>, Drawing)>,
    summary: bool,
    started: Instant,
}

impl ProgressView {
    pub(crate) fn new(mode: Progress, names: &[&str]) -> Self {
        let live = (mode == Progress::Auto && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(
                REDRAWS_PER_SECOND,
            ));
            let style = ProgressStyle::with_template(TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bars = names
                .iter()
                .map(|name| {
                    let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
                    bar.set_prefix(name.to_string());
                    bar.enable_steady_tick(Duration::from_millis(250));
                    bar
                })
                .collect();
            let drawing = console::drawing(&multi);
            (multi, bars, drawing)
        });
        Self {
            live,
            summary: mode != Progress::Silent,
            started: Instant::now(),
        }
    }

    /// Redraws processor `index`'s bar from its run summary and current queues.
    pub(crate) fn update(&self, index: usize, done: &ProcessorSummary, now: &ProcessorStatus) {
        let Some((_, bars, _)) = &self.live else {
            return;
        };
        let Some(bar) = bars.get(index) else {
            return;
        };
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        bar.set_length(done.inputs + now.pending() as u64 + now.ready as u64);
        bar.set_position(done.inputs);
        bar.set_message(format!(
            "ok={} failed={} cancelled={} in flight={} queued={} {:.0}/s",
            done.ok,
            done.failed,
            done.cancelled,
            now.in_flight,
            now.queued,
            done.inputs as f64 / seconds
        ));
    }

    /// Clears the live display and prints the summary line.
    pub(crate) fn finish(self, outcome: Result<&[ProcessorSummary], &Error>) {
        if let Some((multi, bars, drawing)) = self.live {
            drop(drawing);
            bars.iter().for_each(ProgressBar::finish_and_clear);
            let _ = multi.clear();
        }
        if !self.summary {
            return;
        }
        let elapsed = self.started.elapsed();
        match outcome {
            Ok(summaries) => {
                let parts: Vec<String> = summaries.iter().map(ToString::to_string).collect();
                eprintln!("graph run finished in {elapsed:.2?}: {}", parts.join("; "));
            }
            Err(error) => eprintln!("graph run failed after {elapsed:.2?}: {error}"),
        }
    }
}
