#[aqueduct::task]
struct Frame {
    id: u64,
}

struct Model;
struct Tokenizer;

fn load_tokenizer() -> Tokenizer {
    Tokenizer
}

#[aqueduct::handler(init = load_tokenizer)]
fn detect(model: &mut Model, frame: &mut Frame) {
    let _ = model;
    frame.id += 1;
}

fn main() {}
