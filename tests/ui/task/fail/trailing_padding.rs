// A `u64` followed by a `u32`: the struct is rounded up to 16 bytes, 4 of them padding.
#[aqueduct::task]
struct Sample {
    timestamp: u64,
    value: u32,
}

fn main() {}
