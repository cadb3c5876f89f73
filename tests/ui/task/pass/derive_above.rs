// Derives may sit above or below `#[task]`. `Clone`, `Copy` and `Debug`, which `#[task]`
// implements itself unless it sees them, go below it (see tests/README.md).
#[derive(Default, PartialEq, Eq, Hash)]
#[aqueduct::task]
#[derive(Clone, Copy, Debug)]
struct Frame {
    id: u64,
    scale: u32,
    _pad: u32,
}

#[derive(PartialEq, Default)]
#[aqueduct::task]
struct Pair {
    left: u32,
    right: u32,
}

fn main() {
    let frame = Frame { id: 1, scale: 2, _pad: 0 };
    let copy = frame;
    assert!(frame == copy.clone());
    assert_eq!(format!("{frame:?}"), "Frame { id: 1, scale: 2, _pad: 0 }");
    assert!(Pair::default() == Pair { left: 0, right: 0 });
    assert_eq!(format!("{:?}", Pair::default()), "Pair { left: 0, right: 0 }");
}
