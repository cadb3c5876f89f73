#[aqueduct::task]
struct Empty {}

fn main() {}
