//! Segment scanning and record decoding on arbitrary bytes (a disk returns what it returns).
//! Nothing may panic or loop; what the scan reports must be consistent: damage and valid
//! frames inside the data, in order, not overlapping, and every frame it counts as valid
//! decodes or is reported as damage by the reader (never taken as a message half-read).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::queue::record::{self, Frame};
use weir::queue::segment;

fuzz_target!(|data: &[u8]| {
    let id = 7;
    // Half the inputs get a valid header, so the fuzzer reaches the frames quickly.
    let mut bytes = Vec::with_capacity(data.len() + 16);
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(b"WEIRQ\x01\0\0");
        bytes.extend_from_slice(&7u64.to_le_bytes());
    }
    bytes.extend_from_slice(data);
    let scan = segment::scan(&bytes, id, 0);
    assert!(scan.valid_end as usize <= bytes.len());
    let mut end = 0;
    for damage in &scan.damage {
        assert!(damage.start >= end && damage.start <= damage.end && damage.end as usize <= bytes.len(), "{damage:?} after {end}");
        end = damage.end;
    }
    if scan.bad_header {
        assert_eq!(scan.records, 0);
        return;
    }
    // Walk the frames the way the scan does: each valid one decodes or is refused, never panics.
    let mut at = segment::HEADER as usize;
    let mut valid = 0;
    while at < bytes.len() {
        match record::check(&bytes[at..]) {
            Frame::Valid(len) => {
                let _ = record::decode(&Bytes::copy_from_slice(&bytes[at..at + len]));
                valid += 1;
                at += len;
            }
            _ => match segment::resync(&bytes, at + 1) {
                Some(next) => {
                    assert!(next > at);
                    at = next;
                }
                None => break,
            },
        }
    }
    assert_eq!(valid, scan.records, "the scan and a walk of the frames disagree");
});
