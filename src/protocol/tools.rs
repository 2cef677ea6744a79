//! The tool list a client registers from: one entry per `worker_*` method, with JSON Schemas
//! generated from the Rust types (draft 2020-12, every subschema inlined so a consumer needs no
//! `$ref` resolution).

use super::*;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;

struct ToolDef {
    name: &'static str,
    description: &'static str,
    input: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    output: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

fn root<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.root_schema_for::<T>()
}

const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "worker_dispatch_job",
        description: "Run a shell command (or an argv) in a fresh, isolated, disposable session with \
            CPU, memory, time and output limits and no network unless asked. To build or test the \
            user's project, give `workspace: {\"mode\": \"overlay\"}`: the job runs in the project at \
            its real path, its writes are kept apart and reported as `changes` (apply them with \
            worker_apply_changes). Otherwise inject files into the work directory with `files`; the \
            job writes artifacts to $OUTPUT_DIR. Give `wait_ms` to get the full result in the reply \
            when the job ends in time; otherwise poll with worker_get_status and read output with \
            worker_collect_output.",
        input: root::<JobSpec>,
        output: root::<Job>,
    },
    ToolDef {
        name: "worker_get_status",
        description: "Get a job's status, phase, exit code, end reason and metrics (without its \
            output; use worker_collect_output for that).",
        input: root::<JobRef>,
        output: root::<Job>,
    },
    ToolDef {
        name: "worker_collect_output",
        description: "Read a job's stdout and stderr (paged: pass `stream_offset` = the previous \
            `next_offset` to continue) and the artifacts it wrote to $OUTPUT_DIR. Works while the \
            job runs (what exists so far) and after it ends.",
        input: root::<CollectParams>,
        output: root::<CollectResult>,
    },
    ToolDef {
        name: "worker_cancel_job",
        description: "Cancel a job: a queued job never starts; a running job's whole process tree \
            gets SIGTERM, then SIGKILL after a grace period. Cancelling an ended job changes nothing.",
        input: root::<CancelParams>,
        output: root::<Job>,
    },
    ToolDef {
        name: "worker_list_sessions",
        description: "List live jobs and retained ended ones, oldest first, optionally filtered by \
            status.",
        input: root::<ListParams>,
        output: root::<ListResult>,
    },
    ToolDef {
        name: "worker_get_metrics",
        description: "Get the worker's counters (jobs by status and reason), queue depth, active \
            sessions, per-phase latency percentiles, uptime and host CPU and memory.",
        input: root::<MetricsParams>,
        output: root::<MetricsResult>,
    },
    ToolDef {
        name: "worker_apply_changes",
        description: "Write the changes an ended `overlay` job made (its result's `changes`) into \
            the project: all of them, or the listed `paths`. Each path answers `applied`, \
            `conflict` (it changed on disk since the job ended: left alone) or `skipped` \
            (protected, or not in the change set).",
        input: root::<ApplyParams>,
        output: root::<ApplyResult>,
    },
    ToolDef {
        name: "worker_discard_changes",
        description: "Drop the pending changes of an ended `overlay` job without applying them.",
        input: root::<JobRef>,
        output: root::<DiscardResult>,
    },
    ToolDef {
        name: "worker_get_changes",
        description: "Page through the diff of an ended `overlay` job's pending changes when its \
            result's `changes.diff.truncated` is true: pass `offset` (the previous page's `offset` \
            plus the byte length of its `text`) and optionally `max_bytes`.",
        input: root::<GetChangesParams>,
        output: root::<ChangesPage>,
    },
];

/// Names of the methods exposed as tools, in the order they are listed.
pub fn tool_names() -> impl Iterator<Item = &'static str> {
    TOOLS.iter().map(|tool| tool.name)
}

/// Every tool with its input and output schema.
pub fn tool_descriptors() -> Vec<ToolDescriptor> {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    TOOLS
        .iter()
        .map(|tool| ToolDescriptor {
            name: tool.name.to_owned(),
            description: tool.description.to_owned(),
            input_schema: (tool.input)(&mut generator).to_value(),
            output_schema: (tool.output)(&mut generator).to_value(),
        })
        .collect()
}

/// Schemas of the event stream, which is not a tool: the subscribe params, the unsubscribe
/// params (named form) and one `worker_job_event` notification's params.
pub fn stream_schemas() -> Vec<(&'static str, serde_json::Value)> {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    vec![
        (
            "worker_subscribe_job.input",
            root::<SubscribeParams>(&mut generator).to_value(),
        ),
        (
            "worker_unsubscribe_job.input",
            root::<UnsubscribeParams>(&mut generator).to_value(),
        ),
        (
            "worker_job_event.notification",
            root::<JobEventNotification>(&mut generator).to_value(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_self_contained_objects() {
        for tool in tool_descriptors() {
            for schema in [&tool.input_schema, &tool.output_schema] {
                assert_eq!(schema["type"], "object", "{}", tool.name);
                let text = schema.to_string();
                assert!(!text.contains("$ref"), "{} has a $ref", tool.name);
            }
        }
    }

    #[test]
    fn dispatch_schema_keeps_descriptions_and_constraints() {
        let tools = tool_descriptors();
        let dispatch = &tools[0].input_schema;
        let job_id = &dispatch["properties"]["job_id"];
        assert_eq!(job_id["maxLength"], 128);
        assert!(job_id["description"].as_str().unwrap().contains("UUIDv7"));
        assert_eq!(dispatch["additionalProperties"], false);
    }
}
