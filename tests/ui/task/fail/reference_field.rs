#[aqueduct::task]
struct Frame {
    id: u64,
    pixels: &'static [u8; 64],
}

fn main() {}
