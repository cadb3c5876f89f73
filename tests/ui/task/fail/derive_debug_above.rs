// `Clone`, `Copy` and `Debug` derived *above* `#[task]`: the attribute cannot see them
// (derives above it are expanded after it), so its own impls conflict. Write them below
// `#[aqueduct::task]`, or leave them out: `#[task]` implements all three.
#[derive(Clone, Copy, Debug, PartialEq)]
#[aqueduct::task]
struct Frame {
    id: u64,
}

fn main() {}
