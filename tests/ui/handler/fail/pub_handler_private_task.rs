// A `pub` handler over a private task. Rust itself only warns about the function, but
// the stage type `halve` keeps the function's visibility (so `stages::halve {}` and
// `flow!(stages::halve)` work wherever the function can be called), and its
// `Stage::Input` is then a private type in a public trait impl, which Rust rejects. The
// macro cannot see the task's visibility; the fix is to make the task as visible as the
// handler, or the handler as private as the task.
#![allow(private_interfaces)]

mod stages {
    #[aqueduct::task]
    struct Frame {
        id: u64,
    }

    #[aqueduct::handler]
    pub fn halve(frame: &mut Frame) {
        frame.id /= 2;
    }

    pub fn flow() {
        let _ = aqueduct::flow!(halve);
    }
}

fn main() {
    let _marker = stages::halve {};
    stages::flow();
}
