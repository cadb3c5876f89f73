#[aqueduct::task]
struct Item {
    id: u64,
}

// In place, the tasks themselves are the output: per-task results carry no value.
#[aqueduct::handler(batch_size = 8)]
fn validate(items: &mut [Item]) -> Vec<Result<u64, String>> {
    items.iter().map(|item| Ok(item.id)).collect()
}

fn main() {}
