// A nested struct used as a field must be a `#[task]` itself.
#[derive(Clone, Copy)]
struct Metadata {
    created: u64,
}

#[aqueduct::task]
struct Document {
    id: u64,
    meta: Metadata,
}

fn main() {}
