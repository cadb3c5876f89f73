use aqueduct::Stage;

#[aqueduct::task]
struct Text {
    len: u64,
}

#[aqueduct::task]
struct Score {
    value: f64,
}

#[aqueduct::handler(nprocs = 2)]
fn score(text: Text) -> Score {
    Score { value: text.len as f64 / 2.0 }
}

fn main() {
    let out = <score as Stage>::handle(&mut (), vec![Text { len: 3 }]);
    assert_eq!(out[0].as_ref().unwrap().value, 1.5);
}
