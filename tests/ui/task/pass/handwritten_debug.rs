// A task may implement `Debug` by hand (here: a shorter form for logs).
use std::fmt;

#[aqueduct::task]
struct Frame {
    id: u64,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.id)
    }
}

fn main() {
    assert_eq!(format!("{:?}", Frame { id: 7 }), "#7");
}
