// Every signature form may return `Result<_, E>` with `E: Display`; an `Err` fails the task.
use aqueduct::Stage;

#[aqueduct::task]
#[derive(Debug)]
struct Frame {
    id: u64,
}

fn check(frame: &Frame) -> Result<(), String> {
    if frame.id == 0 { Err("frame 0".to_string()) } else { Ok(()) }
}

#[aqueduct::handler]
fn batch(frames: &mut [Frame]) -> Result<(), String> {
    frames.iter().try_for_each(check)
}

#[aqueduct::handler]
fn each(frame: &mut Frame) -> Result<(), std::fmt::Error> {
    frame.id += 1;
    Ok(())
}

#[aqueduct::handler]
fn transform(frame: Frame) -> Result<Frame, String> {
    check(&frame).map(|()| frame)
}

#[aqueduct::handler]
fn transform_all(frames: Vec<Frame>) -> std::result::Result<Vec<Frame>, String> {
    Ok(frames)
}

// A `Result` alias: the error type is not written out.
#[aqueduct::handler]
fn io_transform(frame: Frame) -> std::io::Result<Frame> {
    Ok(frame)
}

fn main() {
    let failed = <transform as Stage>::handle(&mut (), vec![Frame { id: 0 }]);
    assert_eq!(failed[0].as_ref().unwrap_err(), "frame 0");
    assert!(<batch as Stage>::handle(&mut (), vec![Frame { id: 1 }])[0].is_ok());
    assert!(<each as Stage>::handle(&mut (), vec![Frame { id: 1 }])[0].is_ok());
    assert!(<transform_all as Stage>::handle(&mut (), vec![Frame { id: 1 }])[0].is_ok());
    assert!(<io_transform as Stage>::handle(&mut (), vec![Frame { id: 1 }])[0].is_ok());
}
