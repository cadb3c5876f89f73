#[aqueduct::task]
struct Frame {
    id: u64,
    pixels: *const u8,
}

fn main() {}
