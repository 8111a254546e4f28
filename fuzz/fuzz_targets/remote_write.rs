//! `cargo fuzz run remote_write`: [`canopy::fuzzing::remote_write`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canopy::fuzzing::remote_write(data));
