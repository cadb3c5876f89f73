use aqueduct::Stage;

#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler(batch_size = 8)]
fn double(frames: &mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

fn main() {
    let out = <double as Stage>::handle(&mut (), vec![Frame { id: 1 }, Frame { id: 2 }]);
    let ids: Vec<u64> = out.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids, [2, 4]);
    assert_eq!(<double as Stage>::CONFIG.batch_size, 8);
}
