#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 4.0)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {}
