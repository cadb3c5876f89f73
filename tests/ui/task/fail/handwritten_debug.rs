// A hand-written `impl Debug` conflicts with the one `#[task]` generates; to format a task
// yourself, implement `Display` (or a method) instead.
use std::fmt;

#[aqueduct::task]
struct Frame {
    id: u64,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {}", self.id)
    }
}

fn main() {}
