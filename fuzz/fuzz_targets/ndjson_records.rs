//! Any bytes as a Ndjson source file: rows or quarantined rows, never a panic.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::read_all(data, t0_source::Format::Ndjson, "x.ndjson");
});
