use aqueduct::Task;

#[aqueduct::task]
struct Embedding {
    id: u64,
    vector: [f32; 128],
    grid: [[u8; 4]; 4],
}

fn main() {
    let e = Embedding { id: 1, vector: [0.5; 128], grid: [[1; 4]; 4] };
    let copy = e;
    assert_eq!(copy.vector[127], e.vector[0]);
    assert_eq!(Embedding::LAYOUT.fields[1].offset, 8);
}
