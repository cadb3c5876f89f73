// The most common attribute order in Rust code: derives first, then `#[task]`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[aqueduct::task]
struct Frame {
    id: u64,
    scale: f32,
    _pad: u32,
}

#[derive(Default)]
#[aqueduct::task]
#[derive(PartialEq, Eq, Hash)]
struct Pair {
    left: u32,
    right: u32,
}

fn main() {
    let frame = Frame { id: 1, scale: 2.0, _pad: 0 };
    let copy = frame;
    assert_eq!(frame, copy.clone());
    assert_eq!(format!("{frame:?}"), "Frame { id: 1, scale: 2.0, _pad: 0 }");
    assert!(Pair::default() == Pair { left: 0, right: 0 });
}
