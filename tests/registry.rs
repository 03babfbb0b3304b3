//! The embedded schema registry's API contract, over real HTTP: the shapes
//! Confluent's clients expect, and Confluent's error codes.

use std::path::Path;
use std::sync::Arc;

use hl7bridge::registry::http::{serve, CONTENT_TYPE};
use hl7bridge::registry::store::{RegistryStore, DB_FILE};
use hl7bridge::registry::{topic_name_subject, RegistryError, RemoteRegistry, SchemaRegistry};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const V1: &str = r#"{"type":"record","name":"Visit","fields":[{"name":"a","type":"string"}]}"#;
/// V1 plus a required field: cannot read V1's data.
const V2_REQUIRED: &str = r#"{"type":"record","name":"Visit","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;
/// V1 plus a field with a default: reads V1's data.
const V2_DEFAULTED: &str = r#"{"type":"record","name":"Visit","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;

/// A registry served on an ephemeral port.
struct Registry {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Registry {
    async fn start(store: RegistryStore) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Arc::new(store), shutdown.clone()));
        Self {
            base,
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    async fn in_memory() -> Self {
        Self::start(RegistryStore::open_in_memory().unwrap()).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        read(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, CONTENT_TYPE, body.to_string())
            .await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, CONTENT_TYPE, body.to_string())
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (u16, Value) {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        read(request).await
    }

    /// Registers `schema` under `subject` and returns the id.
    async fn register(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self
            .post(
                &format!("/subjects/{subject}/versions"),
                json!({ "schema": schema }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_u64().unwrap()
    }
}

async fn read(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        CONTENT_TYPE,
        "every response is the registry's content type"
    );
    (status, response.json().await.unwrap())
}

/// A Confluent error: the HTTP status and `{"error_code", "message"}`.
fn assert_error((status, body): (u16, Value), expected_status: u16, error_code: u64) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error_code"], error_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// The FHIR schemas grow BACKWARD-compatibly, except once. Under the
/// registry's default level:
/// - each earlier version (as shipped, kept in `tests/avro/`) registers over
///   the one before it, so consumers on a later version read earlier records;
/// - the current version (`schemas/`) with its decimals written as before
///   (strings, no `_value` companion) registers over the last of them:
///   nothing else changed incompatibly;
/// - the current version itself is refused (409) where it has decimals:
///   they turned from strings into doubles. That is the one-time migration
///   (`hl7bridge topics migrate-schemas`, tests/schema_migration.rs). A
///   schema without decimals (DiagnosticReport) registers as it is.
#[tokio::test]
async fn the_fhir_schemas_stay_backward_compatible_except_for_numeric_decimals() {
    let r = Registry::in_memory().await;
    let cases: [(&str, &[&str], &str, bool); 5] = [
        (
            "fhir.encounter-value",
            &[
                include_str!("avro/fhir.Encounter.v1.avsc"),
                include_str!("avro/fhir.Encounter.v2.avsc"),
            ],
            hl7bridge::avro::ENCOUNTER_AVSC,
            true,
        ),
        (
            "fhir.observation-value",
            &[
                include_str!("avro/fhir.Observation.v1.avsc"),
                include_str!("avro/fhir.Observation.v2.avsc"),
            ],
            hl7bridge::avro::OBSERVATION_AVSC,
            true,
        ),
        (
            "fhir.servicerequest-value",
            &[include_str!("avro/fhir.ServiceRequest.v1.avsc")],
            hl7bridge::avro::SERVICE_REQUEST_AVSC,
            true,
        ),
        (
            "fhir.specimen-value",
            &[include_str!("avro/fhir.Specimen.v2.avsc")],
            hl7bridge::avro::SPECIMEN_AVSC,
            true,
        ),
        (
            "fhir.diagnosticreport-value",
            &[include_str!("avro/fhir.DiagnosticReport.v1.avsc")],
            hl7bridge::avro::DIAGNOSTIC_REPORT_AVSC,
            false,
        ),
    ];
    for (subject, history, current, decimals) in cases {
        let mut ids = Vec::new();
        for earlier in history {
            ids.push(r.register(subject, earlier).await);
        }
        if decimals {
            let (status, body) = r
                .post(
                    &format!("/subjects/{subject}/versions"),
                    json!({ "schema": current }),
                )
                .await;
            assert_eq!(
                status, 409,
                "{subject}: numeric decimals need the migration: {body}"
            );
            assert!(
                body["message"].as_str().unwrap().contains("value"),
                "{subject}: the refusal names the decimal field: {body}"
            );
            ids.push(r.register(subject, &with_text_decimals(current)).await);
        } else {
            assert_ne!(
                history.last(),
                Some(&current),
                "{subject}: the schema has grown"
            );
            ids.push(r.register(subject, current).await);
        }
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{subject}: every version is new");
        let versions: Vec<usize> = (1..=ids.len()).collect();
        assert_eq!(
            r.get(&format!("/subjects/{subject}/versions")).await,
            (200, json!(versions)),
            "{subject}"
        );
    }
    r.stop().await;
}

/// A version-3 schema with its decimals as version 2 wrote them: strings,
/// without the `_value` companion fields.
fn with_text_decimals(v3: &str) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(fields)) = o.get_mut("fields") {
                    fields.retain(|f| f["name"] != "_value");
                    for f in fields.iter_mut() {
                        if f["fhirType"] == "decimal" {
                            f["type"] = json!(["null", "string"]);
                        }
                    }
                }
                o.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(v3).unwrap();
    walk(&mut v);
    v.to_string()
}

#[tokio::test]
async fn registering_returns_an_id_and_the_subject_lists_its_versions() {
    let r = Registry::in_memory().await;
    assert_eq!(r.get("/subjects").await, (200, json!([])));

    let id = r.register("adt-value", V1).await;
    assert_eq!(r.get("/subjects").await, (200, json!(["adt-value"])));
    assert_eq!(
        r.get("/subjects/adt-value/versions").await,
        (200, json!([1]))
    );
    let version_1 = json!({ "subject": "adt-value", "version": 1, "id": id, "schema": V1 });
    assert_eq!(
        r.get("/subjects/adt-value/versions/1").await,
        (200, version_1.clone())
    );
    assert_eq!(
        r.get("/subjects/adt-value/versions/latest").await,
        (200, version_1)
    );
    let (status, raw) = r.get("/subjects/adt-value/versions/1/schema").await;
    assert_eq!((status, raw), (200, serde_json::from_str(V1).unwrap()));
    assert_eq!(
        r.get(&format!("/schemas/ids/{id}")).await,
        (200, json!({ "schema": V1 }))
    );
    r.stop().await;
}

#[tokio::test]
async fn registering_the_same_schema_again_returns_the_existing_version() {
    let r = Registry::in_memory().await;
    let id = r.register("adt-value", V1).await;
    let reformatted =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(V1).unwrap()).unwrap();
    assert_eq!(r.register("adt-value", &reformatted).await, id);
    assert_eq!(r.register("adt-value", V1).await, id);
    assert_eq!(
        r.get("/subjects/adt-value/versions").await,
        (200, json!([1]))
    );
    r.stop().await;
}

#[tokio::test]
async fn the_same_schema_under_another_subject_reuses_its_id() {
    let r = Registry::in_memory().await;
    let other = r.register("oru-value", V2_REQUIRED).await;
    let id = r.register("adt-value", V1).await;
    assert_ne!(id, other);
    assert_eq!(r.register("orm-value", V1).await, id);
    assert_eq!(
        r.get("/subjects/orm-value/versions/1").await.1["id"],
        id,
        "version 1 of the new subject, same global id"
    );
    assert_eq!(
        r.get(&format!("/schemas/ids/{id}/subjects")).await,
        (200, json!(["adt-value", "orm-value"]))
    );
    assert_eq!(
        r.get(&format!("/schemas/ids/{id}/versions")).await,
        (
            200,
            json!([
                { "subject": "adt-value", "version": 1 },
                { "subject": "orm-value", "version": 1 },
            ])
        )
    );
    r.stop().await;
}

#[tokio::test]
async fn backward_rejects_a_required_field_and_accepts_one_with_a_default() {
    let r = Registry::in_memory().await;
    r.register("adt-value", V1).await;

    assert_error(
        r.post(
            "/subjects/adt-value/versions",
            json!({ "schema": V2_REQUIRED }),
        )
        .await,
        409,
        409,
    );
    let id = r.register("adt-value", V2_DEFAULTED).await;
    assert_eq!(
        r.get("/subjects/adt-value/versions/latest").await.1,
        json!({ "subject": "adt-value", "version": 2, "id": id, "schema": V2_DEFAULTED })
    );
    assert_eq!(
        r.get("/subjects/adt-value/versions").await,
        (200, json!([1, 2]))
    );
    r.stop().await;
}

/// A field with and without a default are different schemas (different
/// ids), and only the transitive level sees that v3 cannot read v1's data.
#[tokio::test]
async fn transitive_levels_check_every_version_not_just_the_latest() {
    let r = Registry::in_memory().await;
    for subject in ["plain-value", "transitive-value"] {
        r.register(subject, V1).await;
        r.register(subject, V2_DEFAULTED).await;
    }
    r.put(
        "/config/transitive-value",
        json!({ "compatibility": "BACKWARD_TRANSITIVE" }),
    )
    .await;

    let v3 = json!({ "schema": V2_REQUIRED });
    let (status, body) = r.post("/subjects/plain-value/versions", v3.clone()).await;
    assert_eq!(status, 200, "BACKWARD: v3 reads v2's data");
    assert_ne!(
        body["id"],
        r.get("/subjects/plain-value/versions/2").await.1["id"]
    );
    assert_error(
        r.post("/subjects/transitive-value/versions", v3).await,
        409,
        409,
    );
    r.stop().await;
}

#[tokio::test]
async fn forward_and_full_check_the_other_direction() {
    let r = Registry::in_memory().await;
    r.put("/config", json!({ "compatibility": "FORWARD" }))
        .await;
    r.register("fwd-value", V2_DEFAULTED).await;
    // Dropping b: the old schema still reads new data (b takes its default).
    assert_eq!(
        r.post("/subjects/fwd-value/versions", json!({ "schema": V1 }))
            .await
            .0,
        200
    );

    r.put("/config", json!({ "compatibility": "FULL" })).await;
    r.register("full-value", V1).await;
    // v2 can read v1's data (BACKWARD holds), but v1 reads v2's too: FULL holds.
    assert_eq!(
        r.post(
            "/subjects/full-value/versions",
            json!({ "schema": V2_DEFAULTED })
        )
        .await
        .0,
        200
    );
    // Dropping a defaultless field: the old schema cannot read new data.
    r.register("full2-value", V2_REQUIRED).await;
    assert_error(
        r.post("/subjects/full2-value/versions", json!({ "schema": V1 }))
            .await,
        409,
        409,
    );
    r.stop().await;
}

#[tokio::test]
async fn lookup_finds_the_version_a_subject_has_for_a_schema() {
    let r = Registry::in_memory().await;
    let id = r.register("adt-value", V1).await;
    assert_eq!(
        r.post("/subjects/adt-value", json!({ "schema": V1 })).await,
        (
            200,
            json!({ "subject": "adt-value", "version": 1, "id": id, "schema": V1 })
        )
    );
    assert_error(
        r.post("/subjects/adt-value", json!({ "schema": V2_DEFAULTED }))
            .await,
        404,
        40403,
    );
    assert_error(
        r.post("/subjects/missing-value", json!({ "schema": V1 }))
            .await,
        404,
        40401,
    );
    r.stop().await;
}

#[tokio::test]
async fn not_found_errors_carry_confluent_codes() {
    let r = Registry::in_memory().await;
    r.register("adt-value", V1).await;
    assert_error(r.get("/subjects/missing-value/versions").await, 404, 40401);
    assert_error(
        r.get("/subjects/missing-value/versions/1").await,
        404,
        40401,
    );
    assert_error(
        r.get("/subjects/missing-value/versions/latest").await,
        404,
        40401,
    );
    assert_error(r.get("/subjects/adt-value/versions/9").await, 404, 40402);
    assert_error(r.get("/schemas/ids/999").await, 404, 40403);
    assert_error(r.get("/schemas/ids/999/subjects").await, 404, 40403);
    assert_error(r.get("/no/such/route").await, 404, 404);
    r.stop().await;
}

#[tokio::test]
async fn invalid_versions_are_42202() {
    let r = Registry::in_memory().await;
    r.register("adt-value", V1).await;
    for version in ["abc", "0", "-2", "2147483648"] {
        assert_error(
            r.get(&format!("/subjects/adt-value/versions/{version}"))
                .await,
            422,
            42202,
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn invalid_schemas_are_42201_and_bad_bodies_422() {
    let r = Registry::in_memory().await;
    let register = |body: Value| r.post("/subjects/adt-value/versions", body);
    assert_error(register(json!({ "schema": "{not avro" })).await, 422, 42201);
    assert_error(
        register(json!({ "schema": r#"{"type":"record","name":"R"}"# })).await,
        422,
        42201,
    );
    assert_error(
        register(json!({ "schema": V1, "schemaType": "PROTOBUF" })).await,
        422,
        42201,
    );
    assert_error(
        register(json!({
            "schema": V1,
            "references": [{ "name": "x", "subject": "x-value", "version": 1 }]
        }))
        .await,
        422,
        42201,
    );
    assert_error(register(json!({})).await, 422, 42201);
    let bad_json = r
        .send(
            reqwest::Method::POST,
            "/subjects/adt-value/versions",
            CONTENT_TYPE,
            "{\"schema\":".into(),
        )
        .await;
    assert_error(bad_json, 422, 422);
    assert_eq!(
        r.get("/subjects").await,
        (200, json!([])),
        "nothing registered"
    );
    r.stop().await;
}

#[tokio::test]
async fn request_bodies_are_accepted_as_confluent_clients_send_them() {
    let r = Registry::in_memory().await;
    // Fields this registry does not use are ignored; empty references are fine.
    let body = json!({
        "schema": V1, "schemaType": "AVRO", "references": [],
        "metadata": null, "ruleSet": null
    })
    .to_string();
    for content_type in [
        CONTENT_TYPE,
        "application/vnd.schemaregistry+json",
        "application/json; charset=utf-8",
    ] {
        let (status, reply) = r
            .send(
                reqwest::Method::POST,
                "/subjects/adt-value/versions",
                content_type,
                body.clone(),
            )
            .await;
        assert_eq!(status, 200, "{content_type}: {reply}");
    }
    assert_error(
        r.send(
            reqwest::Method::POST,
            "/subjects/adt-value/versions",
            "text/plain",
            body,
        )
        .await,
        415,
        415,
    );
    r.stop().await;
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let r = Registry::in_memory().await;
    let huge = json!({ "schema": "x".repeat(1024 * 1024 + 1) }).to_string();
    let (status, body) = r
        .send(
            reqwest::Method::POST,
            "/subjects/adt-value/versions",
            CONTENT_TYPE,
            huge,
        )
        .await;
    assert_eq!((status, body["error_code"].clone()), (413, json!(413)));
    r.stop().await;
}

#[tokio::test]
async fn compatibility_is_global_by_default_and_overridable_per_subject() {
    let r = Registry::in_memory().await;
    assert_eq!(
        r.get("/config").await,
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    assert_eq!(
        r.put("/config", json!({ "compatibility": "FULL" })).await,
        (200, json!({ "compatibility": "FULL" }))
    );
    assert_eq!(
        r.get("/config").await,
        (200, json!({ "compatibilityLevel": "FULL" }))
    );

    assert_error(r.get("/config/adt-value").await, 404, 40408);
    assert_eq!(
        r.get("/config/adt-value?defaultToGlobal=true").await,
        (200, json!({ "compatibilityLevel": "FULL" }))
    );
    assert_eq!(
        r.put("/config/adt-value", json!({ "compatibility": "none" }))
            .await,
        (200, json!({ "compatibility": "NONE" }))
    );
    assert_eq!(
        r.get("/config/adt-value").await,
        (200, json!({ "compatibilityLevel": "NONE" }))
    );

    // NONE for this subject only: an incompatible v2 goes in here, not elsewhere.
    for subject in ["adt-value", "oru-value"] {
        r.register(subject, V1).await;
    }
    let v2 = json!({ "schema": V2_REQUIRED });
    assert_eq!(
        r.post("/subjects/adt-value/versions", v2.clone()).await.0,
        200
    );
    assert_error(r.post("/subjects/oru-value/versions", v2).await, 409, 409);

    assert_error(
        r.put("/config", json!({ "compatibility": "SIDEWAYS" }))
            .await,
        422,
        42203,
    );
    assert_error(
        r.put("/config/adt-value", json!({ "compatibility": "SIDEWAYS" }))
            .await,
        422,
        42203,
    );
    r.stop().await;
}

#[tokio::test]
async fn the_compatibility_endpoint_answers_without_registering() {
    let r = Registry::in_memory().await;
    r.register("adt-value", V1).await;

    assert_eq!(
        r.post(
            "/compatibility/subjects/adt-value/versions/latest",
            json!({ "schema": V2_DEFAULTED })
        )
        .await,
        (200, json!({ "is_compatible": true }))
    );
    assert_eq!(
        r.post(
            "/compatibility/subjects/adt-value/versions/1",
            json!({ "schema": V2_REQUIRED })
        )
        .await,
        (200, json!({ "is_compatible": false }))
    );
    let (status, verbose) = r
        .post(
            "/compatibility/subjects/adt-value/versions/latest?verbose=true",
            json!({ "schema": V2_REQUIRED }),
        )
        .await;
    assert_eq!(
        (status, verbose["is_compatible"].clone()),
        (200, json!(false))
    );
    assert!(
        verbose["messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{verbose}"
    );
    assert_eq!(
        r.post(
            "/compatibility/subjects/adt-value/versions",
            json!({ "schema": V2_DEFAULTED })
        )
        .await,
        (200, json!({ "is_compatible": true }))
    );
    assert_eq!(
        r.get("/subjects/adt-value/versions").await,
        (200, json!([1])),
        "nothing registered"
    );

    // Against `latest` of a subject with no versions there is nothing to break.
    assert_eq!(
        r.post(
            "/compatibility/subjects/new-value/versions/latest",
            json!({ "schema": V1 })
        )
        .await,
        (200, json!({ "is_compatible": true }))
    );
    assert_error(
        r.post(
            "/compatibility/subjects/new-value/versions/1",
            json!({ "schema": V1 }),
        )
        .await,
        404,
        40401,
    );
    assert_error(
        r.post(
            "/compatibility/subjects/adt-value/versions/7",
            json!({ "schema": V1 }),
        )
        .await,
        404,
        40402,
    );
    assert_error(
        r.post(
            "/compatibility/subjects/adt-value/versions/abc",
            json!({ "schema": V1 }),
        )
        .await,
        422,
        42202,
    );
    assert_error(
        r.post(
            "/compatibility/subjects/adt-value/versions/latest",
            json!({ "schema": "{not avro" }),
        )
        .await,
        422,
        42201,
    );
    r.stop().await;
}

#[tokio::test]
async fn subjects_ids_and_config_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let open = |path: &Path| RegistryStore::open(path).unwrap();

    let r = Registry::start(open(&path)).await;
    let id = r.register("adt-value", V1).await;
    r.put("/config/adt-value", json!({ "compatibility": "FULL" }))
        .await;
    r.stop().await;

    let r = Registry::start(open(&path)).await;
    assert_eq!(
        r.get("/subjects/adt-value/versions/1").await,
        (
            200,
            json!({ "subject": "adt-value", "version": 1, "id": id, "schema": V1 })
        )
    );
    assert_eq!(
        r.register("adt-value", V1).await,
        id,
        "same id after reopening"
    );
    assert_eq!(
        r.get("/config/adt-value").await,
        (200, json!({ "compatibilityLevel": "FULL" }))
    );
    let next = r.register("adt-value", V2_DEFAULTED).await;
    assert!(next > id, "ids are not reused: {next} after {id}");
    r.stop().await;
}

/// `schema_registry_converter`, a Confluent client library, works against the
/// embedded registry unchanged.
#[tokio::test]
async fn a_confluent_client_registers_and_fetches_by_id() {
    let r = Registry::in_memory().await;
    let remote = SchemaRegistry::Remote(RemoteRegistry::new(&r.base).unwrap());
    let subject = topic_name_subject("hl7v2.adt.fhir");
    assert_eq!(subject, "hl7v2.adt.fhir-value");

    let id = remote.register(&subject, V1).await.unwrap();
    assert_eq!(remote.register(&subject, V1).await.unwrap(), id);
    assert_eq!(remote.schema_by_id(id).await.unwrap(), V1);
    assert_eq!(
        r.get(&format!("/subjects/{subject}/versions/1")).await.1["id"],
        id
    );

    let refused = remote.register(&subject, V2_REQUIRED).await.unwrap_err();
    assert!(
        matches!(refused, RegistryError::Remote { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.error_code(), 409);
    let missing = remote.schema_by_id(999).await.unwrap_err();
    assert_eq!(missing.error_code(), 40403);
    r.stop().await;
}

#[tokio::test]
async fn the_embedded_variant_registers_in_the_store() {
    let store = Arc::new(RegistryStore::open_in_memory().unwrap());
    let embedded = SchemaRegistry::Embedded(Arc::clone(&store));
    let id = embedded.register("adt-value", V1).await.unwrap();
    assert_eq!(embedded.schema_by_id(id).await.unwrap(), V1);
    let refused = embedded
        .register("adt-value", V2_REQUIRED)
        .await
        .unwrap_err();
    assert_eq!(refused.error_code(), 409);
    assert_eq!(
        embedded.schema_by_id(999).await.unwrap_err().error_code(),
        40403
    );
}

/// `fhir.Observation` gained `specimen` with the clinical resources: a
/// deployment has the version before it registered, and the new one must
/// be accepted over it under the default BACKWARD level.
#[tokio::test]
async fn the_evolved_observation_schema_registers_over_the_previous_version() {
    let r = Registry::in_memory().await;
    let mut previous: Value = serde_json::from_str(hl7bridge::avro::OBSERVATION_AVSC).unwrap();
    previous["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "specimen");
    let subject = topic_name_subject("fhir.observation");
    let v1 = r.register(&subject, &previous.to_string()).await;
    let v2 = r
        .register(&subject, hl7bridge::avro::OBSERVATION_AVSC)
        .await;
    assert_ne!(v1, v2);
    assert_eq!(
        r.get(&format!("/subjects/{subject}/versions")).await,
        (200, json!([1, 2]))
    );
    r.stop().await;
}
