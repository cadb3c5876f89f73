// The function stays callable (and unit-testable) beside its stage marker.
#[aqueduct::task]
pub struct Frame {
    pub id: u64,
}

/// A documented, public handler.
#[aqueduct::handler]
pub fn increment(frame: &mut Frame) {
    frame.id += 1;
}

mod stages {
    #[aqueduct::handler]
    pub(crate) fn halve(frame: super::Frame) -> super::Frame {
        super::Frame { id: frame.id / 2 }
    }
}

fn main() {
    let mut frame = Frame { id: 1 };
    increment(&mut frame);
    assert_eq!(stages::halve(frame).id, 1);
    let _marker = stages::halve {};
}
