#[aqueduct::task]
struct Frame {
    id: u64,
}

#[aqueduct::handler]
fn scale<'a>(frames: &'a mut [Frame]) {
    frames.iter_mut().for_each(|f| f.id *= 2);
}

#[aqueduct::handler]
fn shift<'f>(frame: &'f mut Frame) -> Result<(), &'static str> {
    frame.id += 1;
    Ok(())
}

fn main() {
    let out = <scale as aqueduct::Stage>::handle(&mut (), vec![Frame { id: 2 }]);
    assert_eq!(out[0].as_ref().unwrap().id, 4);
    let _ = aqueduct::flow!(scale -> shift);
}
