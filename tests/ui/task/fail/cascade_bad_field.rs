// One bad field, and two handlers that use the task: one error, at the field.
#[aqueduct::task]
struct Frame {
    id: u64,
    url: String,
}

#[aqueduct::handler]
fn fetch(frame: &mut Frame) {
    frame.id += frame.url.len() as u64;
}

#[aqueduct::handler]
fn store(frame: Frame) -> Frame {
    frame
}

fn main() {
    let frame = Frame { id: 1, url: String::new() };
    let _ = (frame.id, aqueduct::flow!(fetch -> store));
}
