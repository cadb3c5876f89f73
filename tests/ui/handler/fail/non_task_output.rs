#[aqueduct::task]
struct Length {
    bytes: u64,
}

#[aqueduct::handler]
fn describe(length: Length) -> String {
    format!("{} bytes", length.bytes)
}

fn main() {}
