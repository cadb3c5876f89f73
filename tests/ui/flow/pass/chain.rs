#[aqueduct::task]
struct Image {
    id: u64,
}

#[aqueduct::task]
struct Label {
    class: u32,
    _pad: u32,
}

#[aqueduct::handler]
fn decode(image: &mut Image) {
    image.id += 1;
}

#[aqueduct::handler(batch_size = 4)]
fn classify(images: Vec<Image>) -> Vec<Label> {
    images.iter().map(|i| Label { class: i.id as u32, _pad: 0 }).collect()
}

#[aqueduct::handler]
fn annotate(label: Label) -> Label {
    label
}

fn main() {
    let _single: aqueduct::FlowBuilder<Image, Image, _> = aqueduct::flow!(decode);
    let _chain: aqueduct::FlowBuilder<Image, Label, _> =
        aqueduct::flow!(decode -> classify -> annotate);
}
