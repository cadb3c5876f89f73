//! Compile-pass and compile-fail tests of `#[task]`, `#[handler]` and `flow!`, one
//! folder per macro. Every fail case holds one mistake; its `.stderr` snapshot is the
//! exact diagnostic a user sees. Regenerate with `TRYBUILD=overwrite` (see README.md).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    for macro_name in ["task", "handler", "flow"] {
        cases.pass(format!("tests/ui/{macro_name}/pass/*.rs"));
        cases.compile_fail(format!("tests/ui/{macro_name}/fail/*.rs"));
    }
}
