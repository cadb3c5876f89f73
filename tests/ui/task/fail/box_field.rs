#[aqueduct::task]
struct Frame {
    id: u64,
    pixels: Box<[u8; 64]>,
}

fn main() {}
