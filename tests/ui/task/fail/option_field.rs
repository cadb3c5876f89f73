#[aqueduct::task]
struct Lookup {
    key: u64,
    hit: Option<u64>,
}

fn main() {}
