// Handlers and tasks named like every local the expansion could use.
#[aqueduct::task]
struct items {
    id: u64,
}

#[aqueduct::task]
struct f {
    id: u64,
}

#[aqueduct::handler]
fn item(x: &mut items) {
    x.id += 1;
}

#[aqueduct::handler]
fn state(x: &mut [items]) {
    x.iter_mut().for_each(|i| i.id += 1);
}

#[aqueduct::handler(batch_size = 2)]
fn inputs(x: Vec<items>) -> Vec<f> {
    x.into_iter().map(|i| f { id: i.id }).collect()
}

#[aqueduct::handler]
fn visit(x: f) -> f {
    x
}

#[aqueduct::handler]
fn STAGE(x: f) -> f {
    x
}

#[aqueduct::handler]
fn items_(x: f) -> f {
    x
}

fn main() {
    let out = <item as aqueduct::Stage>::handle(&mut (), vec![items { id: 1 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 2);
    let out = <state as aqueduct::Stage>::handle(&mut (), vec![items { id: 1 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 2);
    let _ = aqueduct::flow!(item -> state -> inputs -> visit -> STAGE -> items_);
}
