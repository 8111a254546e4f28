//! `cargo fuzz run kserve_v2`: [`canopy::fuzzing::kserve_v2`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::kserve_v2(data));
