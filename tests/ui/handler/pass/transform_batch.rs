use aqueduct::Stage;

#[aqueduct::task]
struct Text {
    len: u64,
}

#[aqueduct::task]
struct Score {
    value: f64,
}

#[aqueduct::handler(batch_size = 4, batch_timeout_ms = 10)]
fn score_all(texts: Vec<Text>) -> Vec<Score> {
    texts.iter().map(|t| Score { value: t.len as f64 }).collect()
}

fn main() {
    let out = <score_all as Stage>::handle(&mut (), vec![Text { len: 3 }, Text { len: 4 }]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].as_ref().unwrap().value, 4.0);
}
