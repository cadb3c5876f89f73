// One bad argument, and a flow that names the handler: one error, at the argument.
#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 0)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

#[aqueduct::handler]
fn shift(frame: &mut Frame) {
    frame.id += 1;
}

fn main() {
    let _ = aqueduct::flow!(scale -> shift);
    let _ = aqueduct::flow!(shift -> scale);
}
