//! Worker processes find their stage in a table of registered stages, by the stage's
//! hash. `#[handler]` registers its stages; a hand-written `Stage` impl is registered
//! with `aqueduct::register_stage!`, and one that is not fails `start` with a message
//! that says so. The worker's spec travels in a descriptor, not in its environment.

use aqueduct::{Error, Stage, StageConfig};

#[aqueduct::task]
struct Num {
    n: u64,
    pid: u64,
}

fn triple_all(inputs: Vec<Num>) -> Vec<Result<Num, String>> {
    inputs
        .into_iter()
        .map(|x| {
            Ok(Num {
                n: x.n * 3,
                pid: std::process::id() as u64,
            })
        })
        .collect()
}

/// A hand-written stage, registered.
struct Triple;

impl Stage for Triple {
    type Input = Num;
    type Output = Num;
    type State = ();
    const NAME: &'static str = "triple";
    const CONFIG: StageConfig = StageConfig::DEFAULT;

    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle(_: &mut (), inputs: Vec<Num>) -> Vec<Result<Num, String>> {
        triple_all(inputs)
    }
}

aqueduct::register_stage!(Triple);

/// The same, not registered.
struct Unlisted;

impl Stage for Unlisted {
    type Input = Num;
    type Output = Num;
    type State = ();
    const NAME: &'static str = "unlisted";
    const CONFIG: StageConfig = StageConfig::DEFAULT;

    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle(_: &mut (), inputs: Vec<Num>) -> Vec<Result<Num, String>> {
        triple_all(inputs)
    }
}

#[aqueduct::handler]
fn twice(num: &mut Num) {
    num.n *= 2;
    num.pid = std::process::id() as u64;
}

// Registered a second time: a worker could not choose between the two entries.
aqueduct::register_stage!(twice);

#[tokio::test]
async fn a_registered_hand_written_stage_runs_in_a_worker_process() {
    let flow = aqueduct::FlowBuilder::first::<Triple>()
        .start()
        .await
        .unwrap();
    let out = flow.process(Num { n: 5, pid: 0 }).await.unwrap();
    assert_eq!(out.n, 15);
    assert_ne!(
        out.pid,
        std::process::id() as u64,
        "ran in a worker process"
    );
    flow.stop(true).await;
}

#[tokio::test]
async fn an_unregistered_stage_fails_start_and_says_how_to_register_it() {
    match aqueduct::FlowBuilder::first::<Unlisted>().start().await {
        Err(Error::Init { stage, message }) => {
            assert_eq!(stage, "unlisted");
            assert!(message.contains("register_stage!"), "{message}");
        }
        Err(other) => panic!("expected Error::Init, got {other}"),
        Ok(_) => panic!("an unregistered stage started"),
    }
}

#[tokio::test]
async fn a_stage_registered_twice_fails_start() {
    match aqueduct::flow!(twice).start().await {
        Err(Error::Init { message, .. }) => {
            assert!(message.contains("registered"), "{message}")
        }
        Err(other) => panic!("expected Error::Init, got {other}"),
        Ok(_) => panic!("an ambiguous stage started"),
    }
}

#[tokio::test]
async fn the_workers_environment_names_only_a_descriptor_and_a_nonce() {
    let flow = aqueduct::FlowBuilder::first::<Triple>()
        .start()
        .await
        .unwrap();
    let pid = flow.process(Num { n: 1, pid: 0 }).await.unwrap().pid;
    // The initial environment, as the kernel keeps it (removing the variable later does
    // not erase it there).
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let marker = environ
        .split(|&b| b == 0)
        .filter_map(|var| var.strip_prefix(b"AQUEDUCT_WORKER="))
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .next()
        .expect("the worker was started with a marker");
    let (fd, nonce) = marker.split_once(':').expect("<fd>:<nonce>");
    assert!(fd.parse::<u32>().is_ok(), "{marker}");
    assert!(
        nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()),
        "{marker}"
    );
    flow.stop(true).await;
}
