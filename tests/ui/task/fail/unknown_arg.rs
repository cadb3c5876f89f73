#[aqueduct::task(krate = "::aqueduct")]
struct Record {
    id: u64,
}

fn main() {}
