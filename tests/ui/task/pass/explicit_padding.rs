// Gaps the compiler would pad are filled by explicit fields instead.
#[aqueduct::task]
struct Chunk {
    flags: u8,
    _pad0: [u8; 7],
    offset: u64,
    length: u32,
    _pad1: [u8; 4],
}

fn main() {
    assert_eq!(std::mem::size_of::<Chunk>(), 24);
}
