//! The `hl7bridge` command.

mod convert;
mod input;
mod inspect;
mod reconcile;
mod replay;
mod serve;
mod tail;
mod topics;
mod transform;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hl7bridge",
    version,
    about = "HL7 v2 over MLLP, ACKed only after durable storage"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen for MLLP and store every message before ACKing it.
    Serve(Box<serve::ServeArgs>),
    /// List topics with their partitions and record counts, or create them on Kafka.
    Topics(topics::TopicsArgs),
    /// Print records of a topic as JSON Lines (or raw HL7).
    Tail(tail::TailArgs),
    /// Send files of HL7 messages over MLLP and check every ACK (also the load generator).
    Replay(replay::ReplayArgs),
    /// Run the streaming stage (v2 -> FHIR R4 Avro) on its own: a Kafka
    /// consumer group, or the embedded store in --data-dir.
    Transform(transform::TransformArgs),
    /// Print FHIR R4 resources mapped from HL7 v2 files, offline.
    Convert(convert::ConvertArgs),
    /// Print HL7 v2 files as a readable tree (named fields, components,
    /// decoded escapes) and flag structural problems; exits 1 if any.
    Inspect(inspect::InspectArgs),
    /// Check that every raw record has its outcome on the FHIR topics (or is a
    /// counted no-content or sender duplicate); exit 1 on any finding.
    Reconcile(reconcile::ReconcileArgs),
    /// Check mapping files.
    Mappings {
        #[command(subcommand)]
        action: MappingsAction,
    },
}

#[derive(Debug, Subcommand)]
enum MappingsAction {
    /// Validate code tables (the built-in ones, or --mappings FILE).
    Check {
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
}

pub use crate::config::args::{IntakeArgs, ListenerArgs, RetentionArgs, StageArgs, StoreArgs};

fn check_mappings(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (tables, name) = match &path {
        Some(p) => (crate::transform::Tables::load(p)?, p.display().to_string()),
        None => (
            crate::transform::Tables::builtin(),
            "built-in mappings/tables.toml".to_owned(),
        ),
    };
    println!(
        "{name}: ok ({} event, {} patient-class, {} observation-status codes; default timezone {}; visit number PV1-{}; {} sender override(s))",
        tables.event_encounter_status.len(),
        tables.patient_class_status.len(),
        tables.observation_status.len(),
        tables.default_timezone,
        tables.visit_number_field,
        tables.senders.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Topics(args) => topics::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Transform(args) => transform::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Mappings {
            action: MappingsAction::Check { mappings },
        } => check_mappings(mappings),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`convert ... | head`) is how Unix tools
        // are stopped, not a failure.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hl7bridge: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
