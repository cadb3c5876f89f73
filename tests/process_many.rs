//! 100 000 tasks through a three-stage flow whose stages each run two worker processes:
//! every result comes back exactly once and is correct.

use std::time::Duration;

#[aqueduct::task]
struct Num {
    id: u64,
    a: u64,
    b: u64,
    c: u64,
}

#[aqueduct::handler(nprocs = 2, batch_size = 64)]
fn first(num: &mut Num) {
    num.a = num.id * 2;
}

#[aqueduct::handler(nprocs = 2, batch_size = 64)]
fn second(num: &mut Num) {
    num.b = num.a + 1;
}

#[aqueduct::handler(nprocs = 2, batch_size = 64)]
fn third(num: &mut Num) {
    num.c = num.b * 3;
}

const TASKS: u64 = 100_000;
const SUBMITTERS: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_tasks_each_come_back_once_and_correct() {
    let flow = aqueduct::flow!(first -> second -> third)
        .timeout(Duration::from_secs(120))
        .start()
        .await
        .unwrap();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|start| {
            let flow = flow.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for id in (start..TASKS).step_by(SUBMITTERS as usize) {
                    let num = flow
                        .process(Num {
                            id,
                            a: 0,
                            b: 0,
                            c: 0,
                        })
                        .await
                        .unwrap();
                    out.push((num.id, num.c));
                }
                out
            })
        })
        .collect();
    let mut seen = vec![false; TASKS as usize];
    for submitter in submitters {
        for (id, c) in submitter.await.unwrap() {
            assert!(!seen[id as usize], "task {id} came back twice");
            seen[id as usize] = true;
            assert_eq!(c, (id * 2 + 1) * 3, "task {id}");
        }
    }
    assert!(seen.iter().all(|&s| s), "every task came back");
    let stats = flow.stats();
    assert!(stats.iter().all(|s| s.tasks == TASKS && s.restarts == 0));
    assert!(stats.iter().all(|s| s.worker_pids.len() == 2));
    flow.stop(true).await;
}
