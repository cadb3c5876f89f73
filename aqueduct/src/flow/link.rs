//! The type-level check that adjacent stages of a flow link: the output type of one is
//! the input type of the next.

/// Proof that a stage emitting `Self` may feed a stage taking `In`: implemented only
/// when the two are the same type.
#[diagnostic::on_unimplemented(
    message = "this stage takes `{In}`, but the stage before it outputs `{Self}`",
    label = "expects `{In}`, the previous stage outputs `{Self}`",
    note = "in `flow!(a -> b)`, the output type of `a` must be the input type of `b`"
)]
pub trait Link<In> {
    /// The identity conversion.
    fn link(self) -> In;
}

impl<T> Link<T> for T {
    fn link(self) -> T {
        self
    }
}
