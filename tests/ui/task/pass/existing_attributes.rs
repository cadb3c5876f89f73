// `repr(C)` and `Clone, Copy` already written by the user are kept, not duplicated.
#[aqueduct::task]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
/// A documented task.
pub struct Reading {
    pub sensor: u32,
    pub value: f32,
}

fn main() {
    let r = Reading { sensor: 3, value: 1.5 };
    assert_eq!(r, r.clone());
    assert_eq!(Reading::default().sensor, 0);
}
