#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn scale(frame: &mut Frame) -> Frame {
    frame.id *= 2;
    *frame
}

fn main() {}
