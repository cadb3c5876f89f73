#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(timeout = 100)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {}
