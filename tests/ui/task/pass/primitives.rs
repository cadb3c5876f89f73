// Every primitive field type, ordered from the largest alignment to the smallest.
use aqueduct::Task;

#[aqueduct::task]
struct Primitives {
    a: u128,
    b: i128,
    c: u64,
    d: i64,
    e: f64,
    f: usize,
    g: isize,
    h: u32,
    i: i32,
    j: f32,
    k: u16,
    l: i16,
    m: u8,
    n: i8,
    _pad: [u8; 6],
}

fn main() {
    assert_eq!(Primitives::LAYOUT.fields.len(), 15);
    assert_eq!(Primitives::LAYOUT.size, std::mem::size_of::<Primitives>());
}
