//! A process a handler starts inherits none of its worker's shared-memory and wake-up
//! descriptors (the arena, control and scratch memfds, the two eventfds). The worker
//! inherits them from the parent on purpose, but they are not the handler's to pass on:
//! a long-lived grandchild holding them would keep the arena alive and could write into
//! the control region.

#[aqueduct::task]
struct Probe {
    /// Descriptors of the shell the handler started that point at a memfd or an eventfd.
    leaked: u64,
    /// Descriptors the shell had in all (0, 1 and 2 at least, if the listing worked).
    total: u64,
}

#[aqueduct::handler]
fn probe(probe: &mut Probe) {
    // `$$` is the shell itself: its descriptors are exactly what it inherited.
    let output = std::process::Command::new("/bin/sh")
        .args(["-c", "ls -l /proc/$$/fd"])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("the handler can start a shell");
    let listing = String::from_utf8_lossy(&output.stdout);
    let fds: Vec<&str> = listing.lines().filter(|l| l.contains(" -> ")).collect();
    let leaked: Vec<&&str> = fds
        .iter()
        .filter(|l| l.contains("memfd:") || l.contains("eventfd") || l.contains("aqueduct"))
        .collect();
    if !leaked.is_empty() {
        eprintln!("inherited by the handler's child: {leaked:#?}");
    }
    probe.leaked = leaked.len() as u64;
    probe.total = fds.len() as u64;
}

#[tokio::test]
async fn a_handlers_child_inherits_no_worker_descriptor() {
    let flow = aqueduct::flow!(probe).start().await.unwrap();
    let out = flow
        .process(Probe {
            leaked: 0,
            total: 0,
        })
        .await
        .unwrap();
    assert!(out.total >= 3, "the listing worked: {} fds", out.total);
    assert_eq!(out.leaked, 0, "descriptors leaked into the handler's child");
    flow.stop(true).await;
}
