// `crate = "…"` names the runtime through another path (as with a renamed dependency).
pub use ::aqueduct as runtime;

#[aqueduct::task(crate = "crate::runtime")]
struct Record {
    id: u64,
}

fn main() {
    assert_eq!(<Record as runtime::Task>::LAYOUT.name, "Record");
}
