//! A job's disposable session directory: created in INIT, filled in PREPARE, read in COLLECT,
//! removed in DESTROY.

mod artifacts;
mod dirs;
mod files;
mod store;

pub use artifacts::{ArtifactCaps, CollectBounds, collect_artifacts, output_is_empty};
pub use dirs::{SessionDirs, remove_session, remove_tree};
pub use files::{InjectedFile, write_files};
pub use store::SessionStore;
