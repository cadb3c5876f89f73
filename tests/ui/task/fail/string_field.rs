#[aqueduct::task]
struct Request {
    id: u64,
    url: String,
}

fn main() {}
