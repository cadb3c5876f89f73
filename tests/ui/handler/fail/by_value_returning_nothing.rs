#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn consume(frame: Frame) {
    assert!(frame.id > 0);
}

fn main() {}
