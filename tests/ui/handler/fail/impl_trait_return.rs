#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn double(frame: Frame) -> impl Into<Frame> {
    Frame { id: frame.id * 2 }
}

fn main() {}
