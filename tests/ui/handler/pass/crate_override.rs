// `crate = "…"` names the runtime through another path (as with a renamed dependency).
pub use ::aqueduct as runtime;

#[runtime::task(crate = "crate::runtime")]
struct Frame {
    id: u64,
}

#[runtime::handler(crate = "crate::runtime")]
fn increment(frame: &mut Frame) {
    frame.id += 1;
}

fn main() {
    let out = <increment as runtime::Stage>::handle(&mut (), vec![Frame { id: 1 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 2);
}
