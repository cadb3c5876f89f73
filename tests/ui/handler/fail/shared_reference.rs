#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn inspect(frame: &Frame) {
    assert!(frame.id > 0);
}

fn main() {}
