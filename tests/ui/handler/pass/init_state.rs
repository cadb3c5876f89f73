// `init` returning the state itself; the handler takes `&mut State` first.
use aqueduct::Stage;

#[aqueduct::task]
struct Frame {
    id: u64,
}

struct Counter {
    seen: u64,
}

fn new_counter() -> Counter {
    Counter { seen: 0 }
}

#[aqueduct::handler(init = new_counter)]
fn count(counter: &mut Counter, frame: &mut Frame) {
    counter.seen += 1;
    frame.id = counter.seen;
}

fn main() {
    let mut state = <count as Stage>::init().unwrap();
    let out = <count as Stage>::handle(&mut state, vec![Frame { id: 0 }, Frame { id: 0 }]);
    assert_eq!(out[1].as_ref().unwrap().id, 2);
}
