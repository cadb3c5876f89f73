#[aqueduct::task]
struct Key {
    code: u32,
    symbol: char,
}

fn main() {}
