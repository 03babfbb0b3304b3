//! HL7 parse, routing, patient key and ACK builder, as the intake runs them.
//! The checks are `hl7bridge::fuzzing::parse_route_ack` (shared with tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hl7bridge::fuzzing::parse_route_ack(data);
});
