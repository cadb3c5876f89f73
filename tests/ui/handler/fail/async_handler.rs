#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
async fn scale(frame: &mut Frame) {
    frame.id *= 2;
}

fn main() {}
