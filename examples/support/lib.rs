//! Support code shared by the examples and the integration tests. Kept tiny: anything a
//! user would need belongs in `aqueduct` itself.

/// The naive recursive Fibonacci number: deliberately slow, a stand-in for CPU-bound work.
pub fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Median of `values` (which it sorts); `0.0` when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
