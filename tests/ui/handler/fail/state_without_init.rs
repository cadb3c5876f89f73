#[aqueduct::task]
struct Frame {
    id: u64,
}

struct Model;

#[aqueduct::handler]
fn detect(model: &mut Model, frame: &mut Frame) {
    let _ = model;
    frame.id += 1;
}

fn main() {}
