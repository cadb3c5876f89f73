#[aqueduct::task]
struct Image {
    id: u64,
}

#[aqueduct::task]
struct Label {
    class: u32,
}

#[aqueduct::handler]
fn decode(image: &mut Image) {
    image.id += 1;
}

#[aqueduct::handler]
fn annotate(label: &mut Label) {
    label.class += 1;
}

fn main() {
    let _ = aqueduct::flow!(decode -> annotate);
}
