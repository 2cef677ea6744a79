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

/// A tool entry straight from the method table.
const fn tool<M: table::Method>() -> ToolDef {
    ToolDef {
        name: M::NAME,
        description: match M::DESCRIPTION {
            Some(description) => description,
            None => panic!("a tool needs a description"),
        },
        input: root::<M::Params>,
        output: root::<M::Result>,
    }
}

const TOOLS: &[ToolDef] = &[
    tool::<table::DispatchJob>(),
    tool::<table::GetStatus>(),
    tool::<table::CollectOutput>(),
    tool::<table::CancelJob>(),
    tool::<table::ListSessions>(),
    tool::<table::GetMetrics>(),
    tool::<table::ApplyChanges>(),
    tool::<table::DiscardChanges>(),
    tool::<table::GetChanges>(),
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
