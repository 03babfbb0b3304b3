//! Reading FHIR records back: Confluent wire format, schema by id from the
//! registry, Avro to FHIR JSON. Used by `tail --format fhir` and the tests.

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use crate::avro::{self, AvroError};
use crate::registry::{RegistryError, SchemaRegistry};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Avro(#[from] AvroError),
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("schema {id} from the registry does not parse: {reason}")]
    Schema { id: u32, reason: String },
}

pub struct FhirDecoder {
    registry: SchemaRegistry,
    schemas: HashMap<u32, Schema>,
}

impl FhirDecoder {
    pub fn new(registry: SchemaRegistry) -> Self {
        Self {
            registry,
            schemas: HashMap::new(),
        }
    }

    /// One record value (wire format) to FHIR JSON.
    pub async fn decode(&mut self, value: &[u8]) -> Result<Value, DecodeError> {
        let (id, datum) = avro::wire_decode(value)?;
        if !self.schemas.contains_key(&id) {
            let text = self.registry.schema_by_id(id).await?;
            let schema = Schema::parse_str(&text).map_err(|e| DecodeError::Schema {
                id,
                reason: e.to_string(),
            })?;
            self.schemas.insert(id, schema);
        }
        let schema = &self.schemas[&id];
        Ok(avro::decode(schema, datum)?)
    }
}
