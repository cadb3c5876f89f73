//! Macro hygiene: every macro is used in a module without the implicit prelude, where
//! the prelude's names (and `core`, `std`, `aqueduct`) are shadowed by unrelated items,
//! and the crate denies warnings. It compiles only if generated code names everything
//! through fully qualified paths and triggers no lint; running it proves the result works.

#![deny(warnings)]

#[no_implicit_prelude]
mod hygienic {
    // Unrelated items named like everything a careless expansion might lean on.
    macro_rules! shadow {
        ($($name:ident),*) => {$(
            #[allow(dead_code)]
            struct $name;
        )*};
    }
    shadow!(
        Result, Option, Some, None, Ok, Err, Vec, String, Box, Clone, Copy, Debug, Default, Send,
        Sync, Sized, Fn, FnMut, FnOnce, Drop, From, Into, Iterator, PartialEq, Eq, ToString
    );
    mod aqueduct {}
    mod bytemuck {}
    mod core {}
    mod std {}

    /// A number and the payload that travels with it.
    #[::aqueduct::task]
    #[derive(::core::fmt::Debug)]
    pub struct Number {
        pub value: u64,
        pub history: [Step; 2],
        pub payload: ::aqueduct::ShmBytes,
    }

    /// A nested task: one step the number went through.
    #[::aqueduct::task]
    #[derive(::core::fmt::Debug, ::core::cmp::PartialEq)]
    pub struct Step {
        pub stage: u32,
        pub _pad: u32,
    }

    pub struct Offset(u64);

    fn load_offset() -> ::core::result::Result<Offset, ::std::string::String> {
        ::core::result::Result::Ok(Offset(1))
    }

    #[::aqueduct::handler]
    fn double(number: &mut Number) {
        number.value *= 2;
        number.history[0].stage = 1;
    }

    #[::aqueduct::handler(batch_size = 2, batch_timeout_ms = 0, init = load_offset)]
    fn add(
        offset: &mut Offset,
        numbers: ::std::vec::Vec<Number>,
    ) -> ::core::result::Result<::std::vec::Vec<Number>, ::std::string::String> {
        let mut out = ::std::vec::Vec::new();
        for mut number in numbers {
            number.value += offset.0;
            out.push(number);
        }
        ::core::result::Result::Ok(out)
    }

    #[::aqueduct::handler(nprocs = 2, queue_size = 4)]
    fn check(number: Number) -> ::core::result::Result<Number, ::std::string::String> {
        if number.value > 100 {
            return ::core::result::Result::Err(::std::string::ToString::to_string("too large"));
        }
        ::core::result::Result::Ok(number)
    }

    #[::aqueduct::handler(crate = "::aqueduct")]
    fn mark(numbers: &mut [Number]) {
        for number in numbers {
            number.history[1].stage = 2;
        }
    }

    /// What came out of the flow: the value, each step's stage, the payload.
    pub type Outcome = (u64, [u32; 2], ::std::vec::Vec<u8>);

    /// Runs `value` through every stage.
    pub async fn run(value: u64) -> ::core::result::Result<Outcome, ::aqueduct::Error> {
        let flow = ::aqueduct::flow!(double -> add -> check -> mark)
            .start()
            .await?;
        let payload = ::aqueduct::ShmBytes::copy_from_slice(b"payload")?;
        let empty = Step { stage: 0, _pad: 0 };
        let task = Number {
            value,
            history: [empty; 2],
            payload,
        };
        let result = flow.process(task).await;
        flow.stop(true).await;
        let number = result?;
        let stages = [number.history[0].stage, number.history[1].stage];
        ::core::result::Result::Ok((number.value, stages, number.payload.to_vec()?))
    }
}

#[tokio::test]
async fn generated_code_runs_where_the_prelude_is_shadowed() {
    let outcome = hygienic::run(20)
        .await
        .expect("the flow processes the task");
    assert_eq!(outcome, (41, [1, 2], b"payload".to_vec()));
}

#[tokio::test]
async fn a_handler_error_comes_back_typed() {
    let error = hygienic::run(60)
        .await
        .expect_err("121 is too large for `check`");
    assert_eq!(
        error,
        aqueduct::Error::Handler {
            stage: "check",
            message: "too large".to_string(),
        }
    );
}
