//! v2-to-FHIR mapper, then the Avro encoder and its round trip.
//! The checks are `hl7bridge::fuzzing::map_avro` (shared with tests/fuzz_corpus.rs).
#![no_main]

use std::sync::OnceLock;

use hl7bridge::avro::FhirSchemas;
use hl7bridge::transform::Mapper;
use libfuzzer_sys::fuzz_target;

fn setup() -> &'static (Mapper, FhirSchemas) {
    static SETUP: OnceLock<(Mapper, FhirSchemas)> = OnceLock::new();
    SETUP.get_or_init(|| (Mapper::default(), FhirSchemas::builtin()))
}

fuzz_target!(|data: &[u8]| {
    let (mapper, schemas) = setup();
    hl7bridge::fuzzing::map_avro(mapper, schemas, data, true);
});
