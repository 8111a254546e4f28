//! `cargo fuzz run csv`: [`canopy::fuzzing::csv`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::csv(data));
