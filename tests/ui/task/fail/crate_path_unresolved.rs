// `crate = "…"` is honoured: a path that does not lead to the runtime fails there.
#[aqueduct::task(crate = "crate::missing")]
struct Record {
    id: u64,
}

fn main() {}
