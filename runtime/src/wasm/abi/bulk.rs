//! Bulk lowering of the batch.
//!
//! wasmtime lowers a list of records field by field, looking up the instance's memory for
//! every field; for a batch of message headers (about twenty fields each) that was most of
//! the cost of a call (see docs/benchmarks.md). Message headers and property spans hold only
//! integers, so their canonical ABI layout is fixed: [`BatchBuffers::fill`](super::BatchBuffers)
//! writes each one's bytes as it goes, and lowering a whole list is one allocation in the
//! guest and one copy ([`Records`]).
//!
//! The batch's `data` is gathered the same way: one allocation in the guest, then each
//! payload copied from its shared buffer, so a payload crosses with one copy, not two.
//!
//! The layout below is `weir:module/types.message` and `property-span` under the canonical
//! ABI (fields in order, each aligned to its own alignment, the record to its largest). The
//! derived `ComponentType` still type-checks the records against the module's WIT, and the
//! sizes are asserted against it at compile time.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use wasmtime::ValRaw;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext};
use wasmtime::component::{ComponentType, Lower};

use super::{BatchData, MessageHeader, PropertySpan, Qos, Records, Span};

const MESSAGE_SIZE: usize = 88;
pub(super) const PROPERTY_SIZE: usize = 16;

const _: () = assert!(<MessageHeader as ComponentType>::SIZE32 == MESSAGE_SIZE);
const _: () = assert!(<MessageHeader as ComponentType>::ALIGN32 == 8);
const _: () = assert!(<PropertySpan as ComponentType>::SIZE32 == PROPERTY_SIZE);
const _: () = assert!(<PropertySpan as ComponentType>::ALIGN32 == 4);

fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_span(out: &mut [u8], at: usize, span: Span) {
    put_u32(out, at, span.offset);
    put_u32(out, at + 4, span.len);
}

/// `option<span>`: a one-byte discriminant, then the span aligned to 4 (`out` starts zeroed).
fn put_option_span(out: &mut [u8], at: usize, span: Option<Span>) {
    if let Some(span) = span {
        out[at] = 1;
        put_span(out, at + 4, span);
    }
}

impl MessageHeader {
    /// The canonical ABI bytes of this record.
    pub(super) fn abi_bytes(&self) -> [u8; MESSAGE_SIZE] {
        let mut out = [0u8; MESSAGE_SIZE];
        put_span(&mut out, 0, self.payload);
        put_span(&mut out, 8, self.topic);
        put_u32(&mut out, 16, self.properties_start);
        put_u32(&mut out, 20, self.properties_len);
        put_option_span(&mut out, 24, self.content_type);
        put_option_span(&mut out, 36, self.correlation_data);
        put_option_span(&mut out, 48, self.response_topic);
        if let Some(secs) = self.expiry_secs {
            out[60] = 1;
            put_u32(&mut out, 64, secs);
        }
        out[68] = match self.qos {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
            Qos::ExactlyOnce => 2,
        };
        out[69] = u8::from(self.retain);
        out[72..80].copy_from_slice(&self.ingest_time_ms.to_le_bytes());
        put_span(&mut out, 80, self.source);
        out
    }
}

impl PropertySpan {
    /// The canonical ABI bytes of this record.
    pub(super) fn abi_bytes(&self) -> [u8; PROPERTY_SIZE] {
        let mut out = [0u8; PROPERTY_SIZE];
        put_span(&mut out, 0, self.name);
        put_span(&mut out, 8, self.value);
        out
    }
}

/// Copy `bytes` into a fresh guest allocation aligned to `align`.
fn store_bytes<T>(cx: &mut LowerContext<'_, T>, align: u32, bytes: &[u8]) -> wasmtime::Result<usize> {
    let ptr = cx.realloc(0, 0, align, bytes.len())?;
    let memory = cx.as_slice_mut();
    let Some(out) = memory.get_mut(ptr..ptr + bytes.len()) else { wasmtime::bail!("batch list out of bounds") };
    out.copy_from_slice(bytes);
    Ok(ptr)
}

/// A list's (pointer, length) pair at `offset`, as the canonical ABI stores it in memory.
fn put_list<T>(cx: &mut LowerContext<'_, T>, offset: usize, ptr: usize, len: usize) -> wasmtime::Result<()> {
    let memory = cx.as_slice_mut();
    let Some(out) = memory.get_mut(offset..offset + 8) else { wasmtime::bail!("list pointer out of bounds") };
    out[..4].copy_from_slice(&u32::try_from(ptr)?.to_le_bytes());
    out[4..].copy_from_slice(&u32::try_from(len)?.to_le_bytes());
    Ok(())
}

// SAFETY: `Records<T>` is a `list<T>` to the component model: it type-checks as one (by
// delegating to `[T]`) and has the same ABI. Its bytes are `count` records of `T` in
// `T`'s canonical layout (written only by `abi_bytes` above, whose sizes are asserted
// against the derived `ComponentType`), and they hold no pointers.
unsafe impl<T: ComponentType> ComponentType for Records<'_, T> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = <[T] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[T] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: see the `ComponentType` implementation above; lowering allocates with the guest's
// own realloc, copies exactly those bytes through the bounds-checked memory slice, and hands
// back the (pointer, count) pair the way wasmtime's own list lowering does.
unsafe impl<T: ComponentType> Lower for Records<'_, T> {
    fn linear_lower_to_flat<U>(&self, cx: &mut LowerContext<'_, U>, _ty: InterfaceType, dst: &mut MaybeUninit<[ValRaw; 2]>) -> wasmtime::Result<()> {
        let ptr = store_bytes(cx, T::ALIGN32, self.bytes)?;
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(self.count as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<U>(&self, cx: &mut LowerContext<'_, U>, _ty: InterfaceType, offset: usize) -> wasmtime::Result<()> {
        let ptr = store_bytes(cx, T::ALIGN32, self.bytes)?;
        put_list(cx, offset, ptr, self.count)
    }
}

// SAFETY: `BatchData` is a `list<u8>` to the component model: it type-checks as one (by
// delegating to `[u8]`) and has the same ABI. Lowering allocates `len` bytes with the guest's
// own realloc, fills exactly those bytes through the bounds-checked memory slice, and hands
// back the (pointer, length) pair the way wasmtime's own list lowering does.
unsafe impl ComponentType for BatchData<'_> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = <[u8] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

impl BatchData<'_> {
    /// Copy every payload, then the metadata, into a fresh guest allocation.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let len = self.payload_bytes + self.metadata.len();
        let ptr = cx.realloc(0, 0, 1, len)?;
        let memory = cx.as_slice_mut();
        let Some(mut out) = memory.get_mut(ptr..ptr + len) else { wasmtime::bail!("batch data out of bounds") };
        for message in self.messages {
            let (head, rest) = out.split_at_mut(message.payload.len());
            head.copy_from_slice(&message.payload);
            out = rest;
        }
        out.copy_from_slice(self.metadata);
        Ok((ptr, len))
    }
}

// SAFETY: see the `ComponentType` implementation above.
unsafe impl Lower for BatchData<'_> {
    fn linear_lower_to_flat<T>(&self, cx: &mut LowerContext<'_, T>, _ty: InterfaceType, dst: &mut MaybeUninit<[ValRaw; 2]>) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        // Pointer and length travel as 64-bit values, as wasmtime's own list lowering does.
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(&self, cx: &mut LowerContext<'_, T>, _ty: InterfaceType, offset: usize) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        put_list(cx, offset, ptr, len)
    }
}
