#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 8, batch_wait_timeout_ms = 5)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {}
