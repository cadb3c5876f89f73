#[aqueduct::task]
struct Frame {
    id: u64,
}

struct Scaler {
    factor: u64,
}

impl Scaler {
    #[aqueduct::handler]
    fn scale(&self, frame: &mut Frame) {
        frame.id *= self.factor;
    }
}

fn main() {}
