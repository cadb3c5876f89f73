use super::results::{handle_offsets, take_results, Answer};
use super::*;
use crate::{ShmBytes, ShmStr};

#[crate::task(crate = "crate")]
#[derive(Debug)]
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

/// A stage for exercising the response decoder directly.
#[derive(Debug)]
struct Echo;

impl Stage for Echo {
    type Input = WithHandles;
    type Output = WithHandles;
    type State = ();
    const NAME: &'static str = "echo";
    const CONFIG: StageConfig = StageConfig::DEFAULT;

    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle(_: &mut (), inputs: Vec<WithHandles>) -> Vec<Result<WithHandles, String>> {
        inputs.into_iter().map(Ok).collect()
    }
}

/// The fixture answers in the second lane, whose scratch window is the second half.
const LANE: usize = 1;
const SCRATCH: usize = 1 << 16;

struct Fixture {
    ctl: Region,
    geometry: Geometry,
    offsets: Vec<usize>,
    scratch: Scratch,
    batch: Vec<WithHandles>,
}

impl Fixture {
    fn new() -> Self {
        let geometry = Geometry {
            batch_cap: 2,
            input_size: size_of::<WithHandles>(),
            output_size: size_of::<WithHandles>(),
            lanes: 2,
        };
        let batch = vec![WithHandles {
            id: 1,
            image: ShmBytes::default(),
            labels: [ShmStr::default(); 2],
            score: 0.5,
        }];
        let fixture = Self {
            ctl: Region::create(geometry.region_len()).unwrap(),
            geometry,
            offsets: handle_offsets::<WithHandles>().unwrap(),
            scratch: Scratch::create(SCRATCH).unwrap(),
            batch,
        };
        // A well-formed answer: the input echoed back.
        fixture.write_slot(0, STATUS_OK, bytemuck::bytes_of(&fixture.batch[0]));
        fixture.ctl.write_u32(geometry.resp_count_offset(LANE), 1);
        fixture
    }

    fn write_slot(&self, index: usize, status: u32, data: &[u8]) {
        let at = self.geometry.response_offset(LANE, index);
        self.ctl.write_u32(at, status);
        self.ctl.write_u32(at + 4, data.len() as u32);
        self.ctl.write(at + RESP_HEADER, data);
    }

    fn take(&self) -> Result<BatchResults<WithHandles>, String> {
        take_results::<Echo>(
            &Answer {
                ctl: &self.ctl,
                geometry: self.geometry,
                lane: LANE,
                output_handles: &self.offsets,
                scratch: &self.scratch,
            },
            &self.batch,
        )
    }
}

#[test]
fn a_well_formed_response_is_accepted() {
    let results = Fixture::new().take().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap().id, 1);
}

#[test]
fn corrupted_response_slots_are_rejected() {
    let wrong_count = Fixture::new();
    wrong_count
        .ctl
        .write_u32(wrong_count.geometry.resp_count_offset(LANE), 2);
    assert!(wrong_count.take().unwrap_err().contains("2 results"));

    let bad_status = Fixture::new();
    bad_status.write_slot(0, 0xDEAD, &[]);
    assert!(bad_status.take().unwrap_err().contains("invalid slot"));

    let short_output = Fixture::new();
    short_output.write_slot(0, STATUS_OK, &[0; 8]);
    assert!(short_output.take().unwrap_err().contains("invalid slot"));

    let long_error = Fixture::new();
    let at = long_error.geometry.response_offset(LANE, 0);
    long_error.ctl.write_u32(at, STATUS_ERR);
    long_error.ctl.write_u32(at + 4, u32::MAX);
    assert!(long_error.take().unwrap_err().contains("invalid slot"));
}

#[test]
fn handles_out_of_range_or_not_lent_are_rejected() {
    let fixture = Fixture::new();
    let mut output = fixture.batch[0];
    let [_, len, generation]: [u64; 3] = bytemuck::cast(output.image);
    assert_eq!((len, generation), (0, 0));

    // A scratch block past the end of the worker's scratch area, and one in the other
    // lane's half, which the worker may be overwriting for its next request.
    for offset in [1 << 20, 128] {
        output.image = bytemuck::cast([crate::shm::arena::SCRATCH_TAG | offset, 64u64, 3u64]);
        fixture.write_slot(0, STATUS_OK, bytemuck::bytes_of(&output));
        assert!(fixture
            .take()
            .unwrap_err()
            .contains("outside the worker's scratch area"));
    }

    // An arena handle that was never lent.
    output.image = bytemuck::cast([4096u64, 64u64, 3u64]);
    fixture.write_slot(0, STATUS_OK, bytemuck::bytes_of(&output));
    assert!(fixture.take().unwrap_err().contains("names no block"));
}

#[test]
fn a_scratch_block_is_copied_into_the_arena() {
    let fixture = Fixture::new();
    // A block a worker allocated in its lane's half of the scratch area (the fresh area
    // reads as zeros).
    let mut output = fixture.batch[0];
    let offset = (SCRATCH / 2 + 128) as u64;
    output.image = bytemuck::cast([crate::shm::arena::SCRATCH_TAG | offset, 5u64, 1u64]);
    fixture.write_slot(0, STATUS_OK, bytemuck::bytes_of(&output));
    let results = fixture.take().unwrap();
    let image = results[0].as_ref().unwrap().image;
    assert_eq!(image.len(), 5);
    assert!(!Scratch::is_scratch(&image.handle()), "now an arena block");
    assert_eq!(
        &*image.view().unwrap(),
        &[0; 5],
        "the scratch bytes, copied"
    );
    ownership::release(results[0].as_ref().unwrap());
}
