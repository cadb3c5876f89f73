use aqueduct::Stage;
use std::time::Duration;

#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(
    batch_size = 16,
    batch_timeout_ms = 5,
    nprocs = 3,
    queue_size = 64,
    start_timeout_ms = 2000,
    isolation = "thread",
)]
fn tuned(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id += 1);
}

fn main() {
    let config = <tuned as Stage>::CONFIG;
    assert_eq!(config.batch_size, 16);
    assert_eq!(config.batch_timeout, Duration::from_millis(5));
    assert_eq!(config.nprocs, 3);
    assert_eq!(config.queue_size, Some(64));
    assert_eq!(config.start_timeout, Duration::from_secs(2));
    assert_eq!(<tuned as Stage>::NAME, "tuned");
}
