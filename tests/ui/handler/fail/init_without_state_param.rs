#[aqueduct::task]
struct Frame {
    id: u64,
}

struct Model;

fn load_model() -> Model {
    Model
}

#[aqueduct::handler(init = load_model)]
fn detect(frame: &mut Frame) {
    frame.id += 1;
}

fn main() {}
