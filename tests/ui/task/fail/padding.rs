// A `u8` followed by a `u64`: the compiler inserts 7 padding bytes before `offset`.
#[aqueduct::task]
struct Chunk {
    flags: u8,
    offset: u64,
}

fn main() {}
