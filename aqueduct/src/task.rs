//! What a task is: a plain-data value with a fixed layout that can be placed in shared
//! memory, plus a fingerprint of that layout so two processes can check they agree.
//!
//! `#[task]` implements these traits; writing the impls by hand is possible but must
//! uphold the same promises (see [`TaskField`]'s safety section).

use crate::hash::Digest;
use crate::shm::ShmHandle;

/// A type that may be a field of a `#[task]` struct: plain data whose every bit pattern
/// is valid, possibly holding handles into the shared arena.
///
/// # Safety
/// `visit_handles` must report every [`ShmHandle`] stored in the value, and
/// `HAS_HANDLES` must be `true` if any can be stored. The runtime frees shared memory by
/// these reports, so a hidden handle dangles.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a `#[task]` struct",
    label = "not plain data that can live in shared memory",
    note = "allowed field types: integers, floats, fixed arrays of them, other `#[task]` structs, and `aqueduct::ShmBytes`, `ShmStr`, `ShmVec<T>` for variable-size data",
    note = "an enum, `bool` or `char` field must be stored as an integer and converted when read"
)]
pub unsafe trait TaskField: bytemuck::Pod + std::fmt::Debug + Send + Sync + 'static {
    /// Whether values of this type can hold arena handles.
    const HAS_HANDLES: bool = false;
    /// A fingerprint of the type's layout (0 for primitives, whose layout the field's
    /// type name and size already describe).
    const FINGERPRINT: u64 = 0;

    /// Calls `visit` with every arena handle held by `self`.
    #[inline]
    fn visit_handles(&self, visit: &mut dyn FnMut(ShmHandle)) {
        let _ = visit;
    }

    /// `Debug::fmt`, reached through this trait so that `#[task]`'s generated `Debug`
    /// reports a field type that is not plain data once, as such. Not public API.
    #[doc(hidden)]
    #[inline]
    fn __debug_field(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

macro_rules! plain_fields {
    ($($ty:ty),*) => {$(
        // SAFETY: primitive numbers are `Pod` and hold no handles.
        unsafe impl TaskField for $ty {}
    )*};
}
plain_fields!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

// SAFETY: an array holds exactly its elements' handles, all reported.
unsafe impl<T: TaskField, const N: usize> TaskField for [T; N] {
    const HAS_HANDLES: bool = T::HAS_HANDLES;
    const FINGERPRINT: u64 = Digest::new().word(T::FINGERPRINT).word(N as u64).finish();

    fn visit_handles(&self, visit: &mut dyn FnMut(ShmHandle)) {
        if T::HAS_HANDLES {
            for item in self {
                item.visit_handles(visit);
            }
        }
    }
}

/// A unit of work that flows through stages: a `#[task]` struct.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[task]` type",
    label = "stages take and return `#[task]` structs",
    note = "add `#[aqueduct::task]` to the struct's definition so it gets a shared-memory layout"
)]
pub trait Task: TaskField {
    /// The field-by-field layout, as compiled.
    const LAYOUT: TaskLayout;
    /// A hash of [`Task::LAYOUT`]: equal fingerprints mean byte-compatible layouts.
    const FINGERPRINT: u64;
}

/// A `#[task]` field with `BYTES` bytes of implicit padding before it; implemented only
/// for `BYTES == 0`, so that a layout with a gap does not compile.
///
/// `#[task]` checks every field with `<field as NoPaddingBefore<{ gap }>>::PADDING`, where
/// `field` is a marker type named after the field and `gap` the bytes the compiler put
/// before it. Padding bytes are uninitialised and cannot be shared between processes.
#[diagnostic::on_unimplemented(
    message = "`#[task]` layouts cannot contain implicit padding: the compiler inserts {BYTES} padding bytes before field `{Self}`",
    label = "{BYTES} padding bytes before this field",
    note = "padding bytes are uninitialised memory and cannot be shared between processes",
    note = "order fields from the largest alignment to the smallest, or fill the gap with an explicit field such as `_pad: [u8; {BYTES}]`"
)]
pub trait NoPaddingBefore<const BYTES: usize> {
    /// The padding checked: always 0.
    const PADDING: usize = BYTES;
}
impl<Field: ?Sized> NoPaddingBefore<0> for Field {}

/// A `#[task]` struct whose size leaves `BYTES` bytes of padding after its last field;
/// implemented only for `BYTES == 0` (see [`NoPaddingBefore`]).
#[diagnostic::on_unimplemented(
    message = "`#[task]` layouts cannot contain implicit padding: the compiler appends {BYTES} padding bytes after the last field `{Self}`",
    label = "{BYTES} padding bytes after this field",
    note = "padding bytes are uninitialised memory and cannot be shared between processes",
    note = "the struct's size is rounded up to its alignment; order fields from the largest alignment to the smallest, or add an explicit `_pad: [u8; {BYTES}]` field at the end"
)]
pub trait NoTrailingPadding<const BYTES: usize> {
    /// The padding checked: always 0.
    const PADDING: usize = BYTES;
}
impl<Field: ?Sized> NoTrailingPadding<0> for Field {}

/// The layout of a `#[task]` struct, recorded by the macro from the compiled type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLayout {
    /// The struct's name.
    pub name: &'static str,
    /// `size_of`.
    pub size: usize,
    /// `align_of`.
    pub align: usize,
    /// Every field, in declaration (and memory) order.
    pub fields: &'static [FieldLayout],
}

/// One field of a [`TaskLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLayout {
    /// Field name.
    pub name: &'static str,
    /// Field type, as written.
    pub ty: &'static str,
    /// Byte offset in the struct.
    pub offset: usize,
    /// `size_of` the field.
    pub size: usize,
    /// The field type's own fingerprint (nested tasks, arrays).
    pub fingerprint: u64,
}

/// A hash of everything in a layout (the crate's one hash, `hash::Digest`), usable in
/// constants.
pub const fn fingerprint(layout: &TaskLayout) -> u64 {
    let mut hash = Digest::new()
        .str(layout.name)
        .word(layout.size as u64)
        .word(layout.align as u64);
    let mut i = 0;
    while i < layout.fields.len() {
        let field = &layout.fields[i];
        hash = hash
            .str(field.name)
            .str(field.ty)
            .word(field.offset as u64)
            .word(field.size as u64)
            .word(field.fingerprint);
        i += 1;
    }
    hash.finish()
}

/// Calls `visit` with every arena handle held by `task` (nothing for handle-free types).
#[inline]
pub(crate) fn for_each_handle<T: TaskField>(task: &T, visit: &mut dyn FnMut(ShmHandle)) {
    if T::HAS_HANDLES {
        task.visit_handles(visit);
    }
}
