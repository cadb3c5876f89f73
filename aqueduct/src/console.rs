//! Where the library's own lines for a person go (a worker's log line when the
//! application has no `tracing` subscriber): above the live progress bars while a graph
//! run draws them, so they neither tear the bars nor get drawn over; straight to stderr
//! otherwise.

use std::sync::Mutex;

use indicatif::MultiProgress;

use crate::sync::lock;

/// The live displays, latest last (runs may overlap); each with its registration number.
static LIVE: Mutex<Vec<(u64, MultiProgress)>> = Mutex::new(Vec::new());
static NEXT: Mutex<u64> = Mutex::new(0);

/// Prints `text` as one line on stderr, above the live bars if there are any.
pub(crate) fn line(text: &str) {
    let live = lock(&LIVE).last().map(|(_, multi)| multi.clone());
    match live {
        Some(multi) if multi.println(text).is_ok() => {}
        _ => eprintln!("{text}"),
    }
}

/// Lines go above `multi`'s bars until the returned guard drops.
pub(crate) fn drawing(multi: &MultiProgress) -> Drawing {
    let id = {
        let mut next = lock(&NEXT);
        *next += 1;
        *next
    };
    lock(&LIVE).push((id, multi.clone()));
    Drawing(id)
}

/// Keeps a display registered with [`line`] (see [`drawing`]).
#[derive(Debug)]
pub(crate) struct Drawing(u64);

impl Drop for Drawing {
    fn drop(&mut self) {
        lock(&LIVE).retain(|(id, _)| *id != self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use indicatif::{ProgressBar, ProgressDrawTarget, TermLike};

    use super::*;

    /// A terminal that records what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            let mut screen = self.0.lock().unwrap();
            screen.push_str(s);
            screen.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_go_above_the_live_bars_while_they_are_drawn() {
        let screen = Screen::default();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        let bar = multi.add(ProgressBar::new(10));
        {
            let _drawing = drawing(&multi);
            line("[stage worker 7] WARN stderr: hello from the worker");
        }
        assert!(screen.0.lock().unwrap().contains("hello from the worker"));
        // Once the display is gone, lines no longer go to it.
        line("after the run");
        assert!(!screen.0.lock().unwrap().contains("after the run"));
        bar.finish_and_clear();
    }
}
