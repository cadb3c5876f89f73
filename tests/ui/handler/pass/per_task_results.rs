#[aqueduct::task]
struct Item {
    id: u64,
}

#[aqueduct::task]
struct Scored {
    score: u64,
}

/// In place, one call per batch, a result per task.
#[aqueduct::handler(batch_size = 8)]
fn validate(items: &mut [Item]) -> Vec<Result<(), String>> {
    items
        .iter()
        .map(|item| if item.id == 0 { Err("zero".into()) } else { Ok(()) })
        .collect()
}

/// Transforming, one call per batch, a result per task, with the handler's own error.
#[aqueduct::handler(batch_size = 8)]
fn score(items: Vec<Item>) -> Vec<Result<Scored, std::num::TryFromIntError>> {
    items
        .into_iter()
        .map(|item| u32::try_from(item.id).map(|id| Scored { score: id.into() }))
        .collect()
}

fn main() {
    let _ = aqueduct::flow!(validate -> score);
}
