#[aqueduct::task]
struct Batch {
    id: u64,
    values: Vec<f32>,
}

fn main() {}
