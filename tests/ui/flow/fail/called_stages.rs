#[aqueduct::task]
struct Image {
    id: u64,
}

#[aqueduct::handler]
fn decode(image: &mut Image) {
    image.id += 1;
}

#[aqueduct::handler]
fn resize(image: &mut Image) {
    image.id += 1;
}

fn main() {
    let _ = aqueduct::flow!(decode() -> resize());
}
