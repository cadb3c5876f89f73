#[aqueduct::task]
enum Command {
    Start,
    Stop,
}

fn main() {}
