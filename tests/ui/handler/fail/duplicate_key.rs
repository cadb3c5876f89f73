#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 8, nprocs = 2, batch_size = 16)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {}
