//! Bulk lifting of a filter's answer, `list<result<bool, rejection>>`.
//!
//! wasmtime lifts a list of variants element by element (a bounds check, a type lookup and
//! a discriminant match each). A filter answers once per message, so that was a visible
//! share of a call (see docs/benchmarks.md). The element layout is fixed by the canonical
//! ABI: a one-byte discriminant, then at offset 4 either the `bool` (one byte) or the
//! rejection string's (pointer, length). This reads the whole list in one pass over the
//! slice of guest memory; rejections (rare) are read with wasmtime's own string lifting
//! rules when the module does not use UTF-8.
//!
//! The derived type check still compares the list with the module's WIT.

#![allow(unsafe_code)]

use wasmtime::ValRaw;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};

type Verdict = Result<bool, String>;

const VERDICT_SIZE: usize = 12;
const _: () = assert!(<Verdict as ComponentType>::SIZE32 == VERDICT_SIZE);
const _: () = assert!(<Verdict as ComponentType>::ALIGN32 == 4);

/// A filter's per-message verdicts: `Ok(true)` keeps, `Ok(false)` drops, `Err` rejects.
#[derive(Debug)]
pub struct Verdicts(pub Vec<Verdict>);

// SAFETY: `Verdicts` is exactly `list<result<bool, string>>` to the component model: the
// type check, size and alignment are those of `Vec<Result<bool, String>>`.
unsafe impl ComponentType for Verdicts {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = <Vec<Verdict> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<Verdict> as ComponentType>::typecheck(ty, types)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word) as usize
}

impl Verdicts {
    /// Read `len` verdicts at `ptr`, validating everything wasmtime's own lifting would.
    fn lift(cx: &mut LiftContext<'_>, ty: InterfaceType, ptr: usize, len: usize) -> wasmtime::Result<Self> {
        let element = match ty {
            InterfaceType::List(list) => cx.types[list].element,
            _ => wasmtime::bail!("a filter's verdicts must be a list"),
        };
        cx.consume_fuel_array(len, std::mem::size_of::<Verdict>())?;
        let memory = cx.memory();
        if !ptr.is_multiple_of(4) {
            wasmtime::bail!("list pointer is not aligned");
        }
        let Some(bytes) = len.checked_mul(VERDICT_SIZE).and_then(|size| memory.get(ptr..ptr.checked_add(size)?)) else {
            wasmtime::bail!("list pointer/length out of bounds of memory")
        };
        let utf8 = matches!(cx.options().string_encoding, StringEncoding::Utf8);
        let mut verdicts = Vec::with_capacity(len);
        for item in bytes.chunks_exact(VERDICT_SIZE) {
            verdicts.push(match (item[0], item[4]) {
                (0, 0) => Ok(false),
                (0, 1) => Ok(true),
                (0, _) => wasmtime::bail!("invalid boolean value"),
                (1, _) if utf8 => {
                    let (at, size) = (u32_at(item, 4), u32_at(item, 8));
                    cx.consume_fuel(size)?;
                    let Some(text) = at.checked_add(size).and_then(|end| memory.get(at..end)) else {
                        wasmtime::bail!("string pointer/length out of bounds of memory")
                    };
                    Err(String::from_utf8(text.to_vec())?)
                }
                (1, _) => <Verdict as Lift>::linear_lift_from_memory(cx, element, item)?,
                _ => wasmtime::bail!("invalid expected discriminant"),
            });
        }
        Ok(Verdicts(verdicts))
    }
}

// SAFETY: reads only inside the bounds-checked slice of guest memory wasmtime hands out and
// produces owned values; every invalid input is an error, as in wasmtime's own lifting.
unsafe impl Lift for Verdicts {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &[ValRaw; 2]) -> wasmtime::Result<Self> {
        let (ptr, len) = (src[0].get_u32() as usize, src[1].get_u32() as usize);
        Self::lift(cx, ty, ptr, len)
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        let (ptr, len) = (u32_at(bytes, 0), u32_at(bytes, 4));
        Self::lift(cx, ty, ptr, len)
    }
}
