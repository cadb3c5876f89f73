struct Model;

fn load_model() -> Model {
    Model
}

#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(init = load_model())]
fn scale(model: &mut Model, frame: &mut Frame) {
    let _ = model;
    frame.id *= 2;
}

fn main() {}
