// `init` returning `Result<State, E>`: an `Err` fails the flow's start with its message.
use aqueduct::Stage;

#[aqueduct::task]
struct Frame {
    id: u64,
}

struct Model {
    bias: u64,
}

fn load_model() -> Result<Model, std::num::ParseIntError> {
    "41".parse().map(|bias| Model { bias })
}

fn load_broken() -> Result<Model, String> {
    Err("weights not found".to_string())
}

#[aqueduct::handler(init = load_model)]
fn predict(model: &mut Model, frames: Vec<Frame>) -> Result<Vec<Frame>, String> {
    Ok(frames.into_iter().map(|f| Frame { id: f.id + model.bias }).collect())
}

#[aqueduct::handler(init = load_broken)]
fn broken(model: &mut Model, frame: Frame) -> Frame {
    Frame { id: frame.id + model.bias }
}

fn main() {
    let mut model = <predict as Stage>::init().unwrap();
    let out = <predict as Stage>::handle(&mut model, vec![Frame { id: 1 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 42);
    assert_eq!(<broken as Stage>::init().err().unwrap(), "weights not found");
}
