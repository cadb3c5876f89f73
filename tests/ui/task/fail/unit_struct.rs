#[aqueduct::task]
struct Nothing;

fn main() {}
