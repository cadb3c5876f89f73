#[aqueduct::task]
struct Pair(u64, u64);

fn main() {}
