use aqueduct::Task;

#[aqueduct::task]
struct Point {
    x: f32,
    y: f32,
}

#[aqueduct::task]
struct Box2d {
    min: Point,
    max: Point,
}

#[aqueduct::task]
struct Detection {
    score: f64,
    boxes: [Box2d; 2],
}

fn main() {
    assert_eq!(std::mem::size_of::<Detection>(), 8 + 2 * 16);
    // A nested task's fingerprint flows into its parent's.
    assert_ne!(Detection::LAYOUT.fields[1].fingerprint, 0);
}
