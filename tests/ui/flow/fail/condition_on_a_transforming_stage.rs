#[aqueduct::task]
struct Doc {
    id: u64,
}

#[aqueduct::task]
struct Summary {
    words: u64,
}

#[aqueduct::handler]
fn detect(doc: &mut Doc) {
    doc.id += 1;
}

#[aqueduct::handler]
fn summarise(doc: Doc) -> Summary {
    Summary { words: doc.id }
}

fn long(doc: &Doc) -> bool {
    doc.id > 100
}

fn main() {
    // A task that skipped `summarise` would reach the caller as a `Doc`, not a `Summary`.
    let _ = aqueduct::flow!(detect -> summarise if long);
}
