// A field type that is neither plain data nor `Copy`.
use std::sync::atomic::AtomicU64;

#[aqueduct::task]
struct Counter {
    id: u64,
    hits: AtomicU64,
}

fn main() {}
