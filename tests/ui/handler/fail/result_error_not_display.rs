#[aqueduct::task]
struct Frame {
    id: u64,
}

#[derive(Debug)]
struct DecodeError;

#[aqueduct::handler]
fn decode(frame: &mut Frame) -> Result<(), DecodeError> {
    frame.id += 1;
    Ok(())
}

fn main() {}
