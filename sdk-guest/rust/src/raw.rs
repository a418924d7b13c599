//! The filter and accumulate calls at the canonical ABI level, reading the batch where the
//! host put it.
//!
//! wit-bindgen's export code copies every `message` record of a batch into a Rust struct
//! (twenty-odd loads, branches and stores each) and builds the answer as a `Vec` before
//! lowering it again; for a filter that looks at one field that was most of its time (see
//! docs/benchmarks.md). The contract does not change: `#[weir::filter]` exports the same
//! `weir:module/filter@0.1.0#filter` function (and `#[weir::aggregate]` the same
//! `weir:module/aggregate@0.1.0#accumulate`), but its batch is viewed in place
//! ([`RawHeader`] is the canonical ABI layout of `types.message`) and its verdicts (or outcomes)
//! are written straight into the list the host reads. The WIT world is still embedded by
//! wit-bindgen's `generate!`, so the component's type is exactly the contract's.
//!
//! Layouts (canonical ABI, little-endian): `message` is 88 bytes, aligned to 8; field offsets
//! are in [`RawHeader`]'s accessors. `property-span` is 16 bytes, aligned to 4.
//! `result<bool, string>` is 12 bytes, aligned to 4: a discriminant byte, then at offset 4
//! the `bool`, or the string's pointer and length.

#![allow(unsafe_code)]

use crate::bindings::weir::module::types as wit;

/// One `types.message` record as the host laid it out.
#[repr(C, align(8))]
pub struct RawHeader([u8; 88]);

/// One `types.property-span` record as the host laid it out.
#[repr(C, align(4))]
pub struct RawProperty([u8; 16]);

#[inline]
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[inline]
fn span_at(bytes: &[u8], at: usize) -> wit::Span {
    wit::Span { offset: u32_at(bytes, at), len: u32_at(bytes, at + 4) }
}

/// `option<span>`: a discriminant byte, the span at +4.
#[inline]
fn option_span_at(bytes: &[u8], at: usize) -> Option<wit::Span> {
    (bytes[at] != 0).then(|| span_at(bytes, at + 4))
}

impl RawHeader {
    #[inline]
    pub(crate) fn payload(&self) -> wit::Span {
        span_at(&self.0, 0)
    }
    #[inline]
    pub(crate) fn topic(&self) -> wit::Span {
        span_at(&self.0, 8)
    }
    #[inline]
    pub(crate) fn properties(&self) -> (usize, usize) {
        (u32_at(&self.0, 16) as usize, u32_at(&self.0, 20) as usize)
    }
    #[inline]
    pub(crate) fn content_type(&self) -> Option<wit::Span> {
        option_span_at(&self.0, 24)
    }
    #[inline]
    pub(crate) fn correlation_data(&self) -> Option<wit::Span> {
        option_span_at(&self.0, 36)
    }
    #[inline]
    pub(crate) fn response_topic(&self) -> Option<wit::Span> {
        option_span_at(&self.0, 48)
    }
    #[inline]
    pub(crate) fn expiry_secs(&self) -> Option<u32> {
        (self.0[60] != 0).then(|| u32_at(&self.0, 64))
    }
    #[inline]
    pub(crate) fn qos(&self) -> wit::Qos {
        match self.0[68] {
            0 => wit::Qos::AtMostOnce,
            2 => wit::Qos::ExactlyOnce,
            _ => wit::Qos::AtLeastOnce,
        }
    }
    #[inline]
    pub(crate) fn retain(&self) -> bool {
        self.0[69] != 0
    }
    #[inline]
    pub(crate) fn ingest_time_ms(&self) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[72..80]);
        u64::from_le_bytes(word)
    }
    #[inline]
    pub(crate) fn source(&self) -> wit::Span {
        span_at(&self.0, 80)
    }
}

impl RawProperty {
    #[inline]
    pub(crate) fn name(&self) -> wit::Span {
        span_at(&self.0, 0)
    }
    #[inline]
    pub(crate) fn value(&self) -> wit::Span {
        span_at(&self.0, 8)
    }
}

/// A batch handed to an export, owned (the callee frees what the host allocated).
pub struct RawBatch {
    pub(crate) data: Vec<u8>,
    pub(crate) headers: Vec<RawHeader>,
    pub(crate) properties: Vec<RawProperty>,
}

impl RawBatch {
    /// Take ownership of a call's flattened `batch` parameter.
    ///
    /// # Safety
    /// The pointers and lengths must be the `batch` argument of an export call: lists the
    /// host allocated through this module's `cabi_realloc` with the canonical ABI's sizes
    /// and alignments (1 for `data`, 8 for the messages, 4 for the properties), not used
    /// again by anyone else.
    pub unsafe fn from_call(data: *mut u8, data_len: usize, headers: *mut u8, count: usize, properties: *mut u8, property_count: usize) -> RawBatch {
        // SAFETY: see the function's contract; these are the layouts the host allocated with.
        unsafe {
            RawBatch {
                data: Vec::from_raw_parts(data, data_len, data_len),
                headers: Vec::from_raw_parts(headers.cast::<RawHeader>(), count, count),
                properties: Vec::from_raw_parts(properties.cast::<RawProperty>(), property_count, property_count),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }
}

/// Take ownership of a call's flattened `list<u64>` parameter.
///
/// # Safety
/// `ptr`/`len` must be a `list<u64>` argument of an export call, allocated by the host
/// through this module's `cabi_realloc` with alignment 8, not used again by anyone else.
pub unsafe fn u64s_from_call(ptr: *mut u8, len: usize) -> Vec<u64> {
    // SAFETY: see the function's contract.
    unsafe { Vec::from_raw_parts(ptr.cast::<u64>(), len, len) }
}

#[cfg(target_arch = "wasm32")]
pub use returns::*;

/// Handing results back to the host (32-bit pointers: wasm only).
#[cfg(target_arch = "wasm32")]
mod returns {
    use std::cell::UnsafeCell;

    /// Where an export's results are handed back: (pointer, length) of the result list.
    #[repr(C, align(4))]
    struct ReturnArea(UnsafeCell<[u32; 3]>);

    // SAFETY: a wasm module instance runs one call at a time on one thread.
    unsafe impl Sync for ReturnArea {}

    static RETURN_AREA: ReturnArea = ReturnArea(UnsafeCell::new([0; 3]));

    /// One `result<_, string>` or `result<bool, string>` element: discriminant, then payload.
    type Element = [u32; 3];

    fn rejection(reason: String) -> Element {
        let bytes = Box::into_raw(reason.into_bytes().into_boxed_slice());
        [1, bytes.cast::<u8>() as usize as u32, bytes.len() as u32]
    }

    /// Lower per-message answers as a list and return the return area.
    fn return_list(elements: impl Iterator<Item = Element>) -> *mut u8 {
        let list: Box<[Element]> = elements.collect();
        let len = list.len() as u32;
        let ptr = Box::into_raw(list).cast::<Element>() as usize as u32;
        // SAFETY: single-threaded; the host reads the area before the next call.
        unsafe { *RETURN_AREA.0.get() = [ptr, len, 0] };
        RETURN_AREA.0.get().cast()
    }

    /// Lower a filter's verdicts as `list<result<bool, string>>` and return the return area.
    pub fn return_verdicts(verdicts: impl Iterator<Item = Result<bool, String>>) -> *mut u8 {
        return_list(verdicts.map(|verdict| match verdict {
            Ok(keep) => [0, u32::from(keep), 0],
            Err(reason) => rejection(reason),
        }))
    }

    /// Lower per-message outcomes as `list<result<_, string>>` (what `accumulate` returns)
    /// and return the return area.
    pub fn return_outcomes(outcomes: impl Iterator<Item = Result<(), String>>) -> *mut u8 {
        return_list(outcomes.map(|outcome| match outcome {
            Ok(()) => [0, 0, 0],
            Err(reason) => rejection(reason),
        }))
    }

    /// Lower `result<_, string>` (what `init` returns) and return the return area.
    pub fn return_unit_result(result: Result<(), String>) -> *mut u8 {
        let element = match result {
            Ok(()) => [0, 0, 0],
            Err(reason) => rejection(reason),
        };
        // SAFETY: as above.
        unsafe { *RETURN_AREA.0.get() = element };
        RETURN_AREA.0.get().cast()
    }

    /// Free an element's rejection string, if it has one.
    ///
    /// # Safety
    /// `element` must come from [`rejection`] or be an `ok`, and be freed once.
    unsafe fn free_element(element: &Element) {
        if element[0] == 1 {
            let text = std::ptr::slice_from_raw_parts_mut(element[1] as usize as *mut u8, element[2] as usize);
            // SAFETY: made by `Box::into_raw` of a boxed slice of this length in `rejection`.
            drop(unsafe { Box::from_raw(text) });
        }
    }

    /// `cabi_post` of a call that returned [`return_verdicts`] or [`return_outcomes`]: free
    /// the list and its strings.
    ///
    /// # Safety
    /// `area` must be what one of them returned for the call that just ended.
    pub unsafe fn free_list(area: *mut u8) {
        // SAFETY: the area holds the (pointer, length) written by `return_list`.
        unsafe {
            let [ptr, len, _] = *area.cast::<[u32; 3]>();
            let list = Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut Element, len as usize));
            list.iter().for_each(|element| free_element(element));
        }
    }

    /// `cabi_post` of a call that returned [`return_unit_result`].
    ///
    /// # Safety
    /// `area` must be what [`return_unit_result`] returned for the call that just ended.
    pub unsafe fn free_unit_result(area: *mut u8) {
        // SAFETY: the area holds the element written by `return_unit_result`.
        unsafe { free_element(&*area.cast::<Element>()) }
    }

    /// Take ownership of a string parameter and free it.
    ///
    /// # Safety
    /// `ptr`/`len` must be a string argument of an export call (allocated by the host through
    /// `cabi_realloc` with alignment 1).
    pub unsafe fn drop_string(ptr: *mut u8, len: usize) {
        // SAFETY: see the contract; the bytes are freed with the layout they were allocated with.
        drop(unsafe { Vec::from_raw_parts(ptr, len, len) });
    }
}
