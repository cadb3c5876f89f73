// A flow built by the macro starts and processes a task end to end.
#[aqueduct::task]
struct Number {
    value: u64,
}

#[aqueduct::handler]
fn double(n: &mut Number) {
    n.value *= 2;
}

#[aqueduct::handler(batch_size = 2)]
fn add_one(numbers: Vec<Number>) -> Vec<Number> {
    numbers.into_iter().map(|n| Number { value: n.value + 1 }).collect()
}

fn main() {
    let flow = aqueduct::flow!(double -> add_one).start_blocking().unwrap();
    let out = flow.process_blocking(Number { value: 20 }).unwrap();
    assert_eq!(out.value, 41);
}
