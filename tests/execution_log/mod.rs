//! Counting handler executions across worker processes: each call appends its task id as
//! one line to a file (an `O_APPEND` write of a short line is atomic), so the test can
//! tell a task that ran twice, or never, whichever worker process ran it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh log path for this test process.
pub fn fresh(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("aqueduct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Records one execution of task `id` in the log at `path` (called in the handler).
pub fn record(path: &str, id: u64) {
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    log.write_all(format!("{id}\n").as_bytes()).unwrap();
}

/// How many times each task id ran.
pub fn counts(path: &Path) -> BTreeMap<u64, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.parse().unwrap()).or_default() += 1;
    }
    counts
}
