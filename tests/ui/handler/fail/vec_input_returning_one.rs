#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 8)]
fn first(frames: Vec<Frame>) -> Frame {
    frames[0]
}

fn main() {}
