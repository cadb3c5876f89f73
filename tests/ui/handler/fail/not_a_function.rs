#[aqueduct::handler]
struct Scale {
    factor: u64,
}

fn main() {}
