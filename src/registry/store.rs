//! The registry's state in a SQLite file (WAL, `synchronous=FULL`): a schema
//! id handed out is on disk before anyone can write it into a record.
//!
//! Semantics are Confluent's, AVRO only: ids are global and stable (the same
//! schema under another subject gets the same id), versions count 1, 2, 3…
//! per subject, registering a schema a subject already has returns the
//! existing version, and a new version must pass the subject's compatibility
//! level. The registry is low-traffic, so one connection behind a mutex is
//! enough; each registration is one immediate transaction.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use apache_avro::Schema;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::compatibility::CompatibilityLevel;
use super::RegistryError;

/// The registry's file name in the bridge's data directory.
pub const DB_FILE: &str = "registry.db";

const SCHEMA: &str = "
-- One row per distinct schema: its global id, identity key and the text
-- first registered with it (what GET /schemas/ids/{id} returns).
CREATE TABLE IF NOT EXISTS schemas (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    identity  TEXT    NOT NULL UNIQUE,
    schema    TEXT    NOT NULL
);
-- Each subject's versions, with the text as registered under that subject.
CREATE TABLE IF NOT EXISTS subject_versions (
    subject    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    schema_id  INTEGER NOT NULL REFERENCES schemas(id),
    schema     TEXT    NOT NULL,
    PRIMARY KEY (subject, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subject_config (
    subject        TEXT PRIMARY KEY,
    compatibility  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS global_config (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    compatibility  TEXT NOT NULL
);
";

/// One version of a subject, in the shape Confluent returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

/// A version as addressed in a URL: a number, or `latest` (also `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionId {
    Latest,
    Number(u32),
}

impl VersionId {
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        match s {
            "latest" | "-1" => Ok(Self::Latest),
            _ => match s.parse::<u32>() {
                Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(Self::Number(n)),
                _ => Err(RegistryError::InvalidVersion(s.to_owned())),
            },
        }
    }
}

pub struct RegistryStore {
    conn: Mutex<Connection>,
}

impl RegistryStore {
    /// Opens (or creates) the registry file, e.g. `<data-dir>/registry.db`.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn)
    }

    /// A registry that lives as long as the value: for tests.
    pub fn open_in_memory() -> Result<Self, RegistryError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, RegistryError> {
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// A panic elsewhere cannot leave the connection mid-transaction (the
    /// transaction rolls back on drop), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT DISTINCT subject FROM subject_versions ORDER BY subject")?;
        let subjects = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(subjects)
    }

    /// The subject's version numbers, ascending; 40401 if it has none.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let versions = version_numbers(&self.conn(), subject)?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub fn version(
        &self,
        subject: &str,
        version: VersionId,
    ) -> Result<SubjectVersion, RegistryError> {
        find_version(&self.conn(), subject, version)
    }

    /// Registers `text` under `subject`, or returns the version the subject
    /// already has for it. 42201 if it is not a valid Avro schema, 409 if it
    /// fails the subject's compatibility level.
    pub fn register(&self, subject: &str, text: &str) -> Result<SubjectVersion, RegistryError> {
        self.register_at(subject, text, None)
    }

    /// [`register`](Self::register), checked at `level` instead of the
    /// subject's own, for this one registration: the stored config is not
    /// touched, so nothing is left at `level` if the process dies. Only the
    /// one-time schema migration ([`super::migration`]) uses it.
    pub fn register_overriding(
        &self,
        subject: &str,
        text: &str,
        level: CompatibilityLevel,
    ) -> Result<SubjectVersion, RegistryError> {
        self.register_at(subject, text, Some(level))
    }

    fn register_at(
        &self,
        subject: &str,
        text: &str,
        level: Option<CompatibilityLevel>,
    ) -> Result<SubjectVersion, RegistryError> {
        let (schema, identity) = parse(text)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(existing) = find_by_identity(&tx, subject, &identity)? {
            return Ok(existing);
        }
        let level = match level {
            Some(l) => l,
            None => effective_level(&tx, subject)?,
        };
        let previous = parsed_versions(&tx, subject)?;
        let messages = level.check(&schema, &previous);
        if !messages.is_empty() {
            tracing::info!(subject, %level, "incompatible schema rejected");
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                messages,
            });
        }
        let existing_id: Option<u32> = tx
            .query_row(
                "SELECT id FROM schemas WHERE identity = ?1",
                [&identity],
                |r| r.get(0),
            )
            .optional()?;
        let id = match existing_id {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO schemas (identity, schema) VALUES (?1, ?2)",
                    params![identity, text],
                )?;
                u32::try_from(tx.last_insert_rowid())
                    .map_err(|_| RegistryError::Internal("schema ids exhausted".into()))?
            }
        };
        let version = previous.last().map_or(1, |(v, _)| v + 1);
        tx.execute(
            "INSERT INTO subject_versions (subject, version, schema_id, schema) \
             VALUES (?1, ?2, ?3, ?4)",
            params![subject, version, id, text],
        )?;
        tx.commit()?;
        tracing::info!(subject, id, version, "schema registered");
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            version,
            id,
            schema: text.to_owned(),
        })
    }

    /// The version of `subject` that has this schema: 40401 if the subject
    /// has no versions, 40403 if none of them is this schema.
    pub fn lookup(&self, subject: &str, text: &str) -> Result<SubjectVersion, RegistryError> {
        let (_, identity) = parse(text)?;
        let conn = self.conn();
        match find_by_identity(&conn, subject, &identity)? {
            Some(found) => Ok(found),
            None if version_numbers(&conn, subject)?.is_empty() => {
                Err(RegistryError::SubjectNotFound(subject.to_owned()))
            }
            None => Err(RegistryError::SchemaNotFound),
        }
    }

    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        self.conn()
            .query_row("SELECT schema FROM schemas WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or(RegistryError::SchemaIdNotFound(id))
    }

    /// Every (subject, version) registered with this id; 40403 if none.
    pub fn id_usages(&self, id: u32) -> Result<Vec<(String, u32)>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT subject, version FROM subject_versions WHERE schema_id = ?1 \
             ORDER BY subject, version",
        )?;
        let usages: Vec<(String, u32)> = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if usages.is_empty() {
            return Err(RegistryError::SchemaIdNotFound(id));
        }
        Ok(usages)
    }

    /// The global default: BACKWARD unless set.
    pub fn global_compatibility(&self) -> Result<CompatibilityLevel, RegistryError> {
        global_level(&self.conn())
    }

    pub fn set_global_compatibility(&self, level: CompatibilityLevel) -> Result<(), RegistryError> {
        self.conn().execute(
            "INSERT INTO global_config (singleton, compatibility) VALUES (1, ?1) \
             ON CONFLICT (singleton) DO UPDATE SET compatibility = excluded.compatibility",
            [level.as_str()],
        )?;
        tracing::info!(%level, "global compatibility set");
        Ok(())
    }

    /// The subject's own level, if one was set (the subject need not exist).
    pub fn subject_compatibility(
        &self,
        subject: &str,
    ) -> Result<Option<CompatibilityLevel>, RegistryError> {
        subject_level(&self.conn(), subject)
    }

    pub fn set_subject_compatibility(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        self.conn().execute(
            "INSERT INTO subject_config (subject, compatibility) VALUES (?1, ?2) \
             ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
            params![subject, level.as_str()],
        )?;
        tracing::info!(subject, %level, "subject compatibility set");
        Ok(())
    }

    /// Why `text` could not be registered next under `subject`; empty means
    /// it could. `against` names one version to check against (a missing
    /// `latest` is compatible, as in Confluent); `None` checks the versions
    /// the subject's level says a registration would.
    pub fn check_compatibility(
        &self,
        subject: &str,
        against: Option<VersionId>,
        text: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let (schema, _) = parse(text)?;
        let conn = self.conn();
        let level = effective_level(&conn, subject)?;
        let previous = match against {
            None => parsed_versions(&conn, subject)?,
            Some(VersionId::Latest) => match find_version(&conn, subject, VersionId::Latest) {
                Ok(v) => vec![(v.version, parse_stored(&v)?)],
                Err(RegistryError::SubjectNotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            },
            Some(number) => {
                let v = find_version(&conn, subject, number)?;
                vec![(v.version, parse_stored(&v)?)]
            }
        };
        Ok(level.check(&schema, &previous))
    }
}

/// Parses a schema and derives its identity key.
///
/// The key is the parsed schema written back out (whitespace and attribute
/// order normalised, as Confluent compares Avro's `Schema.toString()`), not
/// Avro's Parsing Canonical Form: that form drops `default`, `doc`, `aliases`
/// and `logicalType`, so two schemas that resolve data differently (a field
/// with and without a default, a `long` with and without `timestamp-millis`)
/// would share one id.
fn parse(text: &str) -> Result<(Schema, String), RegistryError> {
    let schema =
        Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    let identity =
        serde_json::to_string(&schema).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    Ok((schema, identity))
}

fn parse_stored(v: &SubjectVersion) -> Result<Schema, RegistryError> {
    Schema::parse_str(&v.schema).map_err(|e| {
        RegistryError::Internal(format!(
            "stored schema {} version {} no longer parses: {e}",
            v.subject, v.version
        ))
    })
}

/// Reads `version, schema_id, schema` columns.
fn version_row(
    subject: &str,
) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<SubjectVersion> + '_ {
    move |r| {
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            version: r.get(0)?,
            id: r.get(1)?,
            schema: r.get(2)?,
        })
    }
}

fn version_numbers(conn: &Connection, subject: &str) -> Result<Vec<u32>, RegistryError> {
    let mut stmt =
        conn.prepare("SELECT version FROM subject_versions WHERE subject = ?1 ORDER BY version")?;
    let versions = stmt
        .query_map([subject], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(versions)
}

fn find_version(
    conn: &Connection,
    subject: &str,
    version: VersionId,
) -> Result<SubjectVersion, RegistryError> {
    let row = version_row(subject);
    let found = match version {
        VersionId::Latest => conn
            .query_row(
                "SELECT version, schema_id, schema FROM subject_versions \
                 WHERE subject = ?1 ORDER BY version DESC LIMIT 1",
                [subject],
                row,
            )
            .optional()?,
        VersionId::Number(n) => conn
            .query_row(
                "SELECT version, schema_id, schema FROM subject_versions \
                 WHERE subject = ?1 AND version = ?2",
                params![subject, n],
                row,
            )
            .optional()?,
    };
    match (found, version) {
        (Some(v), _) => Ok(v),
        (None, VersionId::Number(n)) if !version_numbers(conn, subject)?.is_empty() => {
            Err(RegistryError::VersionNotFound(n))
        }
        (None, _) => Err(RegistryError::SubjectNotFound(subject.to_owned())),
    }
}

fn find_by_identity(
    conn: &Connection,
    subject: &str,
    identity: &str,
) -> Result<Option<SubjectVersion>, RegistryError> {
    let found = conn
        .query_row(
            "SELECT v.version, v.schema_id, v.schema FROM subject_versions v \
             JOIN schemas s ON s.id = v.schema_id \
             WHERE v.subject = ?1 AND s.identity = ?2 ORDER BY v.version LIMIT 1",
            params![subject, identity],
            version_row(subject),
        )
        .optional()?;
    Ok(found)
}

/// All versions of the subject, oldest first, parsed for checking.
fn parsed_versions(conn: &Connection, subject: &str) -> Result<Vec<(u32, Schema)>, RegistryError> {
    let mut stmt = conn.prepare(
        "SELECT version, schema_id, schema FROM subject_versions WHERE subject = ?1 \
         ORDER BY version",
    )?;
    let rows: Vec<SubjectVersion> = stmt
        .query_map([subject], version_row(subject))?
        .collect::<Result<_, _>>()?;
    rows.iter()
        .map(|v| Ok((v.version, parse_stored(v)?)))
        .collect()
}

fn effective_level(conn: &Connection, subject: &str) -> Result<CompatibilityLevel, RegistryError> {
    match subject_level(conn, subject)? {
        Some(level) => Ok(level),
        None => global_level(conn),
    }
}

fn subject_level(
    conn: &Connection,
    subject: &str,
) -> Result<Option<CompatibilityLevel>, RegistryError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT compatibility FROM subject_config WHERE subject = ?1",
            [subject],
            |r| r.get(0),
        )
        .optional()?;
    stored.map(|s| s.parse()).transpose()
}

fn global_level(conn: &Connection) -> Result<CompatibilityLevel, RegistryError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT compatibility FROM global_config WHERE singleton = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(stored.map(|s| s.parse()).transpose()?.unwrap_or_default())
}
