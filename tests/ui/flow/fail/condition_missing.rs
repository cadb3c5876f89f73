#[aqueduct::task]
struct Doc {
    id: u64,
}

#[aqueduct::handler]
fn detect(doc: &mut Doc) {
    doc.id += 1;
}

#[aqueduct::handler]
fn translate(doc: &mut Doc) {
    doc.id += 1;
}

fn main() {
    let _ = aqueduct::flow!(detect if -> translate);
}
