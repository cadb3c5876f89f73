use aqueduct::{ShmBytes, ShmStr, ShmVec, TaskField};

#[aqueduct::task]
struct Document {
    id: u64,
    body: ShmBytes,
    title: ShmStr,
    scores: ShmVec<f32>,
    tokens: [ShmVec<u32>; 2],
}

fn main() {
    assert!(<Document as TaskField>::HAS_HANDLES);
    let empty = Document {
        id: 0,
        body: ShmBytes::default(),
        title: ShmStr::default(),
        scores: ShmVec::default(),
        tokens: [ShmVec::default(); 2],
    };
    let mut handles = 0;
    empty.visit_handles(&mut |_| handles += 1);
    assert_eq!(handles, 5);
}
