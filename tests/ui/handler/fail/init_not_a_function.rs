// `init` names a constant rather than a function.
struct Model;

const MODEL: u32 = 3;

#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(init = MODEL)]
fn scale(model: &mut Model, frame: &mut Frame) {
    let _ = model;
    frame.id *= 2;
}

fn main() {}
