#[aqueduct::task]
struct Wrapper<T> {
    id: u64,
    value: T,
}

fn main() {}
