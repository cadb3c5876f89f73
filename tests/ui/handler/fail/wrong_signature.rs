#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn scale(frame: &Frame, factor: u32) -> Frame {
    Frame { id: frame.id * u64::from(factor) }
}

fn main() {}
