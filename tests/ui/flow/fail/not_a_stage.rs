// `annotate` is a plain function: it has no `#[handler]`.
#[aqueduct::task]
struct Image {
    id: u64,
}

#[aqueduct::handler]
fn decode(image: &mut Image) {
    image.id += 1;
}

fn annotate(image: &mut Image) {
    image.id += 1;
}

fn main() {
    let _ = aqueduct::flow!(decode -> annotate);
}
