//! One handler per subcommand: read the parsed arguments, call the library, print.
//! `main.rs` only parses and dispatches.

pub mod calibrate;
pub mod compare;
pub mod demo;
pub mod diff;
pub mod eval;
pub mod inventory;
pub mod keygen;
pub mod pin;
pub mod run;
pub mod verify;

use anyhow::Result;
use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::{ModelRef, Opener, SourceOptions};

use crate::cli::SourceArgs;

/// Builds the source opener from the shared flags and the environment.
pub fn opener(args: &SourceArgs) -> Opener {
    Opener::new(source_options(args))
}

/// The source options the shared flags and the environment give.
pub fn source_options(args: &SourceArgs) -> SourceOptions {
    let mut hub = weight_audit::source::HubOptions::from_env();
    if let Some(e) = &args.endpoint {
        hub.endpoint = e.trim_end_matches('/').to_string();
    }
    if args.no_cache {
        hub.cache_dir = None;
    } else if let Some(dir) = &args.cache_dir {
        hub.cache_dir = Some(dir.clone());
    }
    hub.offline |= args.offline;
    hub.concurrency = args.concurrency.max(1);
    hub.coalesce_gap = args.coalesce_gap;
    hub.max_attempts = args.max_attempts.max(1);
    let local = weight_audit::source::LocalInputs {
        named: args.inputs.iter().cloned().collect(),
        search: args.inputs_dirs.clone(),
    };
    SourceOptions { hub, local }
}

/// Opens a model reference with the shared flags.
pub fn open_model(opener: &Opener, reference: &str, args: &SourceArgs) -> Result<Model> {
    let r = ModelRef::parse(reference)?;
    let source = opener.open(&r)?;
    Model::open(source, &model_options(args))
}

/// The model options the shared flags give.
pub fn model_options(args: &SourceArgs) -> ModelOptions {
    ModelOptions {
        max_header_bytes: args.max_header_bytes,
    }
}
