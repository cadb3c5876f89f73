// A signature the macro rejects, and a flow that names the handler: one error.
#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn scale(frames: &[Frame]) {
    let _ = frames;
}

#[aqueduct::handler]
fn shift(frame: &mut Frame) {
    frame.id += 1;
}

fn main() {
    let _ = aqueduct::flow!(shift -> scale -> shift);
}
