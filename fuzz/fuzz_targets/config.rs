//! `cargo fuzz run config`: [`canopy::fuzzing::config`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::config(data));
