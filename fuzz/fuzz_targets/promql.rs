//! `cargo fuzz run promql`: [`canopy::fuzzing::promql`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::promql(data));
