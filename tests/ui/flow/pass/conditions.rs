#[aqueduct::task]
struct Doc {
    id: u64,
    lang: u32,
    translated: u32,
}

#[aqueduct::handler]
fn detect(doc: &mut Doc) {
    doc.lang = 1;
}

#[aqueduct::handler]
fn translate(doc: &mut Doc) {
    doc.translated = 1;
}

#[aqueduct::handler]
fn annotate(doc: Doc) -> Doc {
    doc
}

fn foreign(doc: &Doc) -> bool {
    doc.lang != 1
}

mod rules {
    pub fn even(doc: &super::Doc) -> bool {
        doc.id % 2 == 0
    }
}

fn main() {
    // A condition is a function (or a closure that captures nothing) on the task as it
    // arrives at the stage; any stage that returns the type it takes may have one.
    let _ = aqueduct::flow!(detect -> translate if foreign -> annotate);
    let _ = aqueduct::flow!(detect if rules::even -> translate if |doc: &Doc| doc.id > 3);
    let _ = aqueduct::flow!(<detect -> translate if foreign>);
}
