// A per-task handler's error type must be `Display` too; the error points at it.
#[aqueduct::task]
struct Item {
    id: u64,
}

#[derive(Debug)]
struct Invalid;

#[aqueduct::handler(batch_size = 8)]
fn validate(items: &mut [Item]) -> Vec<Result<(), Invalid>> {
    items.iter().map(|item| if item.id == 0 { Err(Invalid) } else { Ok(()) }).collect()
}

fn main() {}
