//! The schema registry the Avro stage registers its schemas with.
//!
//! Consumers of the Avro topics need a Confluent-compatible registry to turn
//! the schema id in each record's wire-format prefix back into a schema. A
//! site that already runs one points the bridge at it ([`RemoteRegistry`]);
//! a site that does not gets one embedded in the bridge ([`store`] behind
//! [`http`]), so Confluent clients work against either, unchanged.
//!
//! - [`store`]: subjects, versions, global ids and config in a SQLite file
//! - [`compatibility`]: the compatibility levels and the Avro checks behind them
//! - [`http`]: Confluent's REST subset over the store
//! - [`migration`]: the one-time move of the FHIR subjects to numeric decimals

pub mod compatibility;
pub mod http;
pub mod migration;
pub mod store;

use std::sync::Arc;

use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, get_schema_by_subject_and_version, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SuppliedSchema};

use store::RegistryStore;

/// The subject a topic's value schema is registered under.
///
/// Confluent's default TopicNameStrategy: `<topic>-value`. Only values are
/// Avro; record keys stay plain strings (the patient key), so there is no
/// `-key` subject.
pub fn topic_name_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// A registry failure, carrying Confluent's `error_code` where it has one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(u32),
    /// A lookup (`POST /subjects/{s}`) for a schema the subject does not have.
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Schema {0} not found")]
    SchemaIdNotFound(u32),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level '{0}'. Valid values are none, backward, forward, full, \
         backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \
         \"{subject}\", details: [{}]", messages.join("; ")
    )]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    #[error("registry store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("registry: {0}")]
    Internal(String),
    /// An answer from a remote registry: its own `error_code`, or 50003 when
    /// the request failed before the registry answered.
    #[error("remote schema registry: {message}")]
    Remote { error_code: u32, message: String },
}

impl RegistryError {
    /// Confluent's `error_code`: the HTTP status, or the status times 100
    /// plus a detail (40401 is a 404).
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound(_) => 40402,
            Self::SchemaNotFound | Self::SchemaIdNotFound(_) => 40403,
            Self::SubjectConfigNotFound(_) => 40408,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel(_) => 42203,
            Self::Incompatible { .. } => 409,
            Self::Store(_) | Self::Internal(_) => 50001,
            Self::Remote { error_code, .. } => *error_code,
        }
    }
}

/// Where schemas are registered: in this process, or at a registry elsewhere.
pub enum SchemaRegistry {
    Embedded(Arc<RegistryStore>),
    Remote(RemoteRegistry),
}

impl SchemaRegistry {
    /// Registers an Avro schema under `subject` (or finds it already there)
    /// and returns its global id, the one written into the wire format.
    pub async fn register(&self, subject: &str, schema_text: &str) -> Result<u32, RegistryError> {
        match self {
            Self::Embedded(store) => {
                let (store, subject, text) = (
                    Arc::clone(store),
                    subject.to_owned(),
                    schema_text.to_owned(),
                );
                blocking(move || store.register(&subject, &text).map(|v| v.id)).await
            }
            Self::Remote(remote) => remote.register(subject, schema_text).await,
        }
    }

    /// The schema text registered under a global id.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        match self {
            Self::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.schema_by_id(id)).await
            }
            Self::Remote(remote) => remote.schema_by_id(id).await,
        }
    }

    /// The schema text of the subject's latest version.
    pub async fn latest_schema(&self, subject: &str) -> Result<String, RegistryError> {
        match self {
            Self::Embedded(store) => {
                let (store, subject) = (Arc::clone(store), subject.to_owned());
                blocking(move || {
                    store
                        .version(&subject, store::VersionId::Latest)
                        .map(|v| v.schema)
                })
                .await
            }
            Self::Remote(remote) => {
                let registered = get_schema_by_subject_and_version(&remote.settings, subject, None)
                    .await
                    .map_err(remote_error)?;
                Ok(registered.schema)
            }
        }
    }
}

/// Runs a store call (an fsynced SQLite transaction) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Internal(format!("store task failed: {e}")))?
}

/// A Confluent-compatible registry reached over HTTP, through
/// `schema_registry_converter` (the client the Kafka side already uses).
pub struct RemoteRegistry {
    settings: SrSettings,
}

impl RemoteRegistry {
    /// `url` is the registry's base URL, e.g. `http://registry:8081`.
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let settings = SrSettings::new_builder(url.trim_end_matches('/').to_owned())
            .build()
            .map_err(remote_error)?;
        Ok(Self { settings })
    }

    async fn register(&self, subject: &str, schema_text: &str) -> Result<u32, RegistryError> {
        let schema = SuppliedSchema::new(None, SchemaType::Avro, schema_text.to_owned());
        let registered = post_schema(&self.settings, subject.to_owned(), schema)
            .await
            .map_err(remote_error)?;
        Ok(registered.id)
    }

    async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let registered = get_schema_by_id(id, &self.settings)
            .await
            .map_err(remote_error)?;
        Ok(registered.schema)
    }
}

/// Keeps the registry's own `error_code` (the client wraps it as the error's
/// source) so a remote 409 reads like an embedded one.
fn remote_error(e: SRCError) -> RegistryError {
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        if let Some(raw) = cause.downcast_ref::<RawError>() {
            return RegistryError::Remote {
                error_code: raw.error_code,
                message: raw.message.clone(),
            };
        }
        source = cause.source();
    }
    RegistryError::Remote {
        error_code: 50003,
        message: e.to_string(),
    }
}
