//! Assembly: from a [`Config`](crate::config::Config) to running
//! components. The CLI parses arguments and makes one call in here; this is
//! the only place that looks at which backend a config names.
//!
//! - [`backend`]: the backend's seams: writer, reader, stage driver;
//! - [`registry`]: the schema registry, remote or embedded;
//! - [`stage`]: the stage built from a config;
//! - [`metrics`]: the operator's endpoints;
//! - [`listen`]: binding every listener before announcing any;
//! - [`retention`]: the embedded store's retention sweeps and size gauges;
//! - one file per command: [`serve`], [`transform`], [`tail`], [`topics`],
//!   [`replay`], [`convert`].

pub mod backend;
pub mod convert;
pub mod listen;
pub mod metrics;
pub mod registry;
pub mod replay;
pub mod retention;
pub mod serve;
pub mod stage;
pub mod tail;
pub mod topics;
pub mod transform;
