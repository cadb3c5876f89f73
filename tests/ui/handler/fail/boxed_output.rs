// A generic return type that is neither `Vec<…>` nor a `Result` (or an alias of one).
#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn boxed(frame: Frame) -> Box<Frame> {
    Box::new(frame)
}

fn main() {}
