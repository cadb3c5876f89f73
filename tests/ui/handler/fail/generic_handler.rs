#[aqueduct::handler]
fn identity<T: aqueduct::Task>(task: T) -> T {
    task
}

fn main() {}
