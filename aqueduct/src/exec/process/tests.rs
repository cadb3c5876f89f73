use super::*;
use crate::{ShmBytes, ShmStr};

#[crate::task(crate = "crate")]
struct WithHandles {
    id: u64,
    image: ShmBytes,
    labels: [ShmStr; 2],
    score: f64,
}

#[test]
fn handle_offsets_are_found_by_probing() {
    assert_eq!(handle_offsets::<WithHandles>().unwrap(), vec![8, 32, 56]);
    assert!(handle_offsets::<u64>().unwrap().is_empty());
}
