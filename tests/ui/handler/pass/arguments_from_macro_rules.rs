// Handler arguments forwarded through a user's `macro_rules!` arrive as invisible
// groups; they must be accepted like plain literals and paths.
#[aqueduct::task]
struct Count {
    n: u64,
}

fn start() -> u64 {
    1
}

macro_rules! stage {
    ($name:ident, $isolation:literal, $batch:literal, $init:path) => {
        #[aqueduct::handler(isolation = $isolation, batch_size = $batch, init = $init)]
        fn $name(step: &mut u64, item: &mut Count) {
            item.n += *step;
        }
    };
}

stage!(add_one, "thread", 4, start);

fn main() {
    let mut state = 1;
    let mut count = Count { n: 1 };
    add_one(&mut state, &mut count);
    assert_eq!(count.n, 2);
}
