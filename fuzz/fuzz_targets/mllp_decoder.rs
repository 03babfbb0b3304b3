//! MLLP decoder: arbitrary bytes in arbitrary chunkings, small frame limit.
//! The checks are `hl7bridge::fuzzing::mllp_decoder` (shared with tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hl7bridge::fuzzing::mllp_decoder(data);
});
