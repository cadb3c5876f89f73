#[aqueduct::task]
struct Point {
    id: u64,
    xy: (f32, f32),
}

fn main() {}
