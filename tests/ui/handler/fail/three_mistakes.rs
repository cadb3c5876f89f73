// Three independent mistakes, all reported by one compile.
#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 0, nprocs = "six", colour = 1)]
fn scale(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {}
