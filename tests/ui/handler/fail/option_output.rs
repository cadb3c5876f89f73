#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn keep_even(frame: Frame) -> Option<Frame> {
    (frame.id % 2 == 0).then_some(frame)
}

fn main() {}
