use aqueduct::Stage;

#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn increment(frame: &mut Frame) {
    frame.id += 1;
}

fn main() {
    let out = <increment as Stage>::handle(&mut (), vec![Frame { id: 1 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 2);
}
