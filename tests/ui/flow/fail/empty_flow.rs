fn main() {
    let _ = aqueduct::flow!();
}
