#[aqueduct::task]
struct Length {
    bytes: u64,
}

#[aqueduct::handler]
fn measure(text: String) -> Length {
    Length { bytes: text.len() as u64 }
}

fn main() {}
