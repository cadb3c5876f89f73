#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn double(frame: impl Into<Frame>) -> Frame {
    let frame = frame.into();
    Frame { id: frame.id * 2 }
}

fn main() {}
