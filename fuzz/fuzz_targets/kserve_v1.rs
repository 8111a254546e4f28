//! `cargo fuzz run kserve_v1`: [`canopy::fuzzing::kserve_v1`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::kserve_v1(data));
