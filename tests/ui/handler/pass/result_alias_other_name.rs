// An alias of `Result` under another name than `Result` is a fallible handler too.
use std::fmt;

#[derive(Debug)]
struct BadFrame;

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad frame")
    }
}

type Fallible<T> = Result<T, BadFrame>;

#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn check(frame: Frame) -> Fallible<Frame> {
    if frame.id == 0 {
        return Err(BadFrame);
    }
    Ok(frame)
}

#[aqueduct::handler]
fn check_in_place(frame: &mut Frame) -> Fallible<()> {
    frame.id += 1;
    Ok(())
}

#[aqueduct::handler]
fn check_batch(frames: Vec<Frame>) -> Fallible<Vec<Frame>> {
    Ok(frames)
}

fn main() {
    let _ = aqueduct::flow!(check -> check_in_place -> check_batch);
}
