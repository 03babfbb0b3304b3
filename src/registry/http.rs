//! Confluent Schema Registry's REST API (the subset producers, consumers and
//! their serializers use) over a [`RegistryStore`], so Confluent clients need
//! no change to use the embedded registry.
//!
//! Responses are `application/vnd.schemaregistry.v1+json`; errors are
//! Confluent's `{"error_code": N, "message": "..."}` with HTTP status
//! `N / 100` for five-digit codes (40401 is a 404) and `N` otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::compatibility::CompatibilityLevel;
use super::store::{RegistryStore, VersionId};
use super::{blocking, RegistryError};

/// The content type of every response.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Request content types accepted (Confluent clients send the first).
const ACCEPTED_CONTENT_TYPES: [&str; 3] = [
    CONTENT_TYPE,
    "application/vnd.schemaregistry+json",
    "application/json",
];

/// Largest request body: schemas are small, and this bounds what one
/// request can make the bridge buffer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

type Store = State<Arc<RegistryStore>>;
type Params = Query<HashMap<String, String>>;

/// Serves the registry until `shutdown` is cancelled, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<RegistryStore>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "schema registry listening");
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

pub fn router(store: Arc<RegistryStore>) -> Router {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config).put(set_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatible),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatible_with_version),
        )
        .fallback(|| async { ApiError::http(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::http(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP 405 Method Not Allowed",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
}

async fn subjects(State(store): Store) -> Result<Response, ApiError> {
    let subjects = blocking(move || store.subjects()).await?;
    Ok(reply(&subjects))
}

async fn versions(State(store): Store, Path(subject): Path<String>) -> Result<Response, ApiError> {
    let versions = blocking(move || store.versions(&subject)).await?;
    Ok(reply(&versions))
}

async fn version(
    State(store): Store,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = VersionId::parse(&version)?;
    let found = blocking(move || store.version(&subject, version)).await?;
    Ok(reply(&found))
}

/// The schema itself, unwrapped: an Avro schema is already JSON.
async fn version_schema(
    State(store): Store,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = VersionId::parse(&version)?;
    let found = blocking(move || store.version(&subject, version)).await?;
    Ok(with_content_type(StatusCode::OK, found.schema))
}

async fn register(
    State(store): Store,
    Path(subject): Path<String>,
    SrJson(body): SrJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    let text = body.avro_text()?;
    let registered = blocking(move || store.register(&subject, &text)).await?;
    Ok(reply(&json!({ "id": registered.id })))
}

async fn lookup(
    State(store): Store,
    Path(subject): Path<String>,
    SrJson(body): SrJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    let text = body.avro_text()?;
    let found = blocking(move || store.lookup(&subject, &text)).await?;
    Ok(reply(&found))
}

async fn schema_by_id(State(store): Store, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let schema = blocking(move || store.schema_by_id(id)).await?;
    Ok(reply(&json!({ "schema": schema })))
}

async fn id_subjects(State(store): Store, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let usages = blocking(move || store.id_usages(id)).await?;
    let mut subjects: Vec<String> = usages.into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    Ok(reply(&subjects))
}

async fn id_versions(State(store): Store, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let usages = blocking(move || store.id_usages(id)).await?;
    let usages: Vec<_> = usages
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(reply(&usages))
}

async fn global_config(State(store): Store) -> Result<Response, ApiError> {
    let level = blocking(move || store.global_compatibility()).await?;
    Ok(reply(&json!({ "compatibilityLevel": level.as_str() })))
}

async fn set_global_config(
    State(store): Store,
    SrJson(body): SrJson<ConfigRequest>,
) -> Result<Response, ApiError> {
    let level = body.level()?;
    blocking(move || store.set_global_compatibility(level)).await?;
    Ok(reply(&json!({ "compatibility": level.as_str() })))
}

/// 40408 unless the subject has its own level, or `?defaultToGlobal=true`.
async fn subject_config(
    State(store): Store,
    Path(subject): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let default_to_global = flag(&params, "defaultToGlobal");
    let level = blocking(move || match store.subject_compatibility(&subject)? {
        Some(level) => Ok(level),
        None if default_to_global => store.global_compatibility(),
        None => Err(RegistryError::SubjectConfigNotFound(subject)),
    })
    .await?;
    Ok(reply(&json!({ "compatibilityLevel": level.as_str() })))
}

async fn set_subject_config(
    State(store): Store,
    Path(subject): Path<String>,
    SrJson(body): SrJson<ConfigRequest>,
) -> Result<Response, ApiError> {
    let level = body.level()?;
    blocking(move || store.set_subject_compatibility(&subject, level)).await?;
    Ok(reply(&json!({ "compatibility": level.as_str() })))
}

/// Against the versions a registration would be checked against.
async fn compatible(
    State(store): Store,
    Path(subject): Path<String>,
    Query(params): Params,
    SrJson(body): SrJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    check(store, subject, None, &params, body).await
}

async fn compatible_with_version(
    State(store): Store,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    SrJson(body): SrJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    let version = VersionId::parse(&version)?;
    check(store, subject, Some(version), &params, body).await
}

async fn check(
    store: Arc<RegistryStore>,
    subject: String,
    against: Option<VersionId>,
    params: &HashMap<String, String>,
    body: SchemaRequest,
) -> Result<Response, ApiError> {
    let text = body.avro_text()?;
    let messages = blocking(move || store.check_compatibility(&subject, against, &text)).await?;
    let is_compatible = messages.is_empty();
    Ok(if flag(params, "verbose") {
        reply(&json!({ "is_compatible": is_compatible, "messages": messages }))
    } else {
        reply(&json!({ "is_compatible": is_compatible }))
    })
}

/// The body of register, lookup and compatibility requests. Fields this
/// registry does not use (`metadata`, `ruleSet`, ...) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: Option<String>,
    schema_type: Option<String>,
    references: Option<Vec<serde_json::Value>>,
}

impl SchemaRequest {
    fn avro_text(self) -> Result<String, RegistryError> {
        if let Some(kind) = self.schema_type.filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(RegistryError::InvalidSchema(format!(
                "schema type {kind} is not supported; this registry holds AVRO only"
            )));
        }
        if self.references.is_some_and(|r| !r.is_empty()) {
            return Err(RegistryError::InvalidSchema(
                "references are not supported".into(),
            ));
        }
        self.schema
            .ok_or_else(|| RegistryError::InvalidSchema("Empty schema".into()))
    }
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

impl ConfigRequest {
    fn level(self) -> Result<CompatibilityLevel, RegistryError> {
        self.compatibility.unwrap_or_default().parse()
    }
}

/// Ids that are not numbers name no schema (Confluent answers 404 too).
fn schema_id(s: &str) -> Result<u32, ApiError> {
    s.parse()
        .map_err(|_| ApiError::http(StatusCode::NOT_FOUND, "HTTP 404 Not Found"))
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn reply<T: Serialize + ?Sized>(body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => with_content_type(StatusCode::OK, text),
        Err(e) => ApiError::from(RegistryError::Internal(e.to_string())).into_response(),
    }
}

fn with_content_type(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// A JSON request body in one of the registry's content types, within
/// [`MAX_BODY_BYTES`]; malformed JSON is a 422, as in Confluent.
struct SrJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for SrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
            let essence = value
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase());
            if !essence.is_some_and(|e| ACCEPTED_CONTENT_TYPES.contains(&e.as_str())) {
                return Err(ApiError::http(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "HTTP 415 Unsupported Media Type",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::http(r.status(), r.body_text()))?;
        serde_json::from_slice(&bytes).map(SrJson).map_err(|e| {
            ApiError::http(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Unrecognized JSON: {e}"),
            )
        })
    }
}

/// A failed request: a registry error, or one from HTTP itself (unknown
/// route, bad JSON, body too large), whose `error_code` is the status.
#[derive(Debug)]
enum ApiError {
    Registry(RegistryError),
    Http { status: StatusCode, message: String },
}

impl ApiError {
    fn http(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Http {
            status,
            message: message.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        Self::Registry(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            Self::Registry(e) => (e.error_code(), e.to_string()),
            Self::Http { status, message } => (u32::from(status.as_u16()), message),
        };
        let status_code = if code >= 1000 { code / 100 } else { code };
        let status = u16::try_from(status_code)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error_code = code, %message, "schema registry request failed");
        } else {
            tracing::debug!(error_code = code, %message, "schema registry request refused");
        }
        let body = json!({ "error_code": code, "message": message }).to_string();
        with_content_type(status, body)
    }
}
