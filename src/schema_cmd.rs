//! `opencode-worker schema`: writes or checks one input and one output schema file per tool.

use crate::protocol::tools::tool_descriptors;
use std::path::Path;

fn rendered() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for tool in tool_descriptors() {
        for (kind, schema) in [
            ("input", &tool.input_schema),
            ("output", &tool.output_schema),
        ] {
            let mut text = serde_json::to_string_pretty(schema).expect("schemas serialize");
            text.push('\n');
            files.push((format!("{}.{kind}.json", tool.name), text));
        }
    }
    for (name, schema) in crate::protocol::tools::stream_schemas() {
        let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
        text.push('\n');
        files.push((format!("{name}.json"), text));
    }
    files
}

pub fn write(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let files = rendered();
    for (name, text) in &files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(files.len())
}

/// The names of files that are missing, stale, or no longer generated.
pub fn check(dir: &Path) -> Vec<String> {
    let files = rendered();
    let mut problems: Vec<String> = files
        .iter()
        .filter(|(name, text)| {
            std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text)
        })
        .map(|(name, _)| format!("{name}: missing or stale"))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !files.iter().any(|(known, _)| *known == name) {
                problems.push(format!("{name}: no tool generates it"));
            }
        }
    }
    problems
}
