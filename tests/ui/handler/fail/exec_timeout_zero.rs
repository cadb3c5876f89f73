#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(exec_timeout_ms = 0)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {}
