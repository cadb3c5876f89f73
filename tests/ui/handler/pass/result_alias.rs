// Any alias of `Result`, not only one spelled `Result`.
#[aqueduct::task]
struct Frame {
    id: u64,
}

type Fallible<T> = std::result::Result<T, String>;

#[aqueduct::handler]
fn check(frame: Frame) -> Fallible<Frame> {
    if frame.id > 10 {
        return Err(format!("{} is too large", frame.id));
    }
    Ok(frame)
}

#[aqueduct::handler]
fn mark(frame: &mut Frame) -> Fallible<()> {
    frame.id += 1;
    Ok(())
}

fn main() {
    let out = <check as aqueduct::Stage>::handle(&mut (), vec![Frame { id: 11 }]);
    assert_eq!(out[0].as_ref().unwrap_err(), "11 is too large");
    let _ = aqueduct::flow!(check -> mark);
}
