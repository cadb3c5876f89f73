// A `pub` handler over a private task: Rust itself only warns about such a function.
#![allow(private_interfaces)]

struct Frame {
    id: u64,
}

mod inner {
    #[aqueduct::task]
    pub(crate) struct Frame {
        pub(crate) id: u64,
    }

    #[aqueduct::handler]
    pub fn scale(frame: &mut Frame) {
        frame.id *= 2;
    }
}

fn main() {
    let _ = Frame { id: 0 }.id;
    let out = <inner::scale as aqueduct::Stage>::handle(&mut (), vec![inner::Frame { id: 2 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 4);
}
