#[aqueduct::task]
struct Ragged {
    rows: aqueduct::ShmVec<aqueduct::ShmVec<u32>>,
}

fn main() {}
