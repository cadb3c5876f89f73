#[aqueduct::task]
#[repr(packed)]
struct Record {
    id: u64,
    kind: u8,
}

fn main() {}
