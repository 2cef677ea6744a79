//! The client's roots (MCP `roots/list`) as the candidate workspace roots, when the worker's
//! own configuration names none: the operator's `workspace.roots` always win.

// Roots are deprecated from the 2026-07-28 revision on (SEP-2577), but the clients in use
// today (on earlier revisions) offer them, and they are the only way to learn the project.
#![allow(deprecated)]

use crate::workspace::WorkspaceConfig;
use rmcp::{Peer, RoleServer};
use std::path::PathBuf;
use std::time::Duration;

/// A client that offers roots but does not answer is not waited for longer than this.
const PATIENCE: Duration = Duration::from_secs(5);

pub async fn apply(peer: &Peer<RoleServer>, workspace: &mut WorkspaceConfig) {
    let offered = peer
        .peer_info()
        .is_some_and(|info| info.capabilities.roots.is_some());
    if !offered {
        return;
    }
    if !workspace.roots.is_empty() {
        tracing::info!(
            "the configuration's workspace.roots apply; the client's roots are not used"
        );
        return;
    }
    let listed = match tokio::time::timeout(PATIENCE, peer.list_roots()).await {
        Ok(Ok(listed)) => listed,
        Ok(Err(error)) => {
            tracing::warn!(%error, "the client offers roots but listing them failed");
            return;
        }
        Err(_) => {
            tracing::warn!("the client offers roots but did not list them in time");
            return;
        }
    };
    let paths: Vec<PathBuf> = listed
        .roots
        .iter()
        .filter_map(|root| path_of(&root.uri))
        .collect();
    if paths.is_empty() {
        return;
    }
    tracing::info!(roots = ?paths, "workspace roots from the MCP client");
    let cwd = std::env::current_dir().ok();
    let inside = cwd
        .as_ref()
        .is_some_and(|cwd| paths.iter().any(|root| cwd.starts_with(root)));
    // A relative workspace path starts at the project root: the client's first root when the
    // worker was started elsewhere.
    if workspace.root.is_none() && !inside {
        workspace.root = Some(paths[0].clone());
    }
    workspace.roots = paths;
}

/// The local path of a `file://` URI; other schemes name nothing on this host.
fn path_of(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file://localhost/x` and `file:///x` name the same path.
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(decoded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_become_paths() {
        assert_eq!(path_of("file:///home/a%20b/p"), Some("/home/a b/p".into()));
        assert_eq!(path_of("file://localhost/srv"), Some("/srv".into()));
        assert_eq!(path_of("https://example.com/x"), None);
        assert_eq!(path_of("file://host/x"), None);
    }
}
