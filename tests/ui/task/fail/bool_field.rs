#[aqueduct::task]
struct Job {
    id: u64,
    done: bool,
}

fn main() {}
