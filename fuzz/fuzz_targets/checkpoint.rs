//! `cargo fuzz run checkpoint`: [`canopy::fuzzing::checkpoint`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::checkpoint(data));
