// `crate = "…"` names the runtime through another path, as in the other two macros.
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
    let _ = runtime::flow!(crate = "crate::runtime"; increment -> increment);
}
