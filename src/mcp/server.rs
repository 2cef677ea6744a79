//! The MCP server handler: tools from the worker's table, calls through the worker's methods,
//! results as `structuredContent` plus the rendered text, errors as tool errors (`isError`).

use super::progress;
use super::seam::{self, Methods};
use super::start::Started;
use crate::protocol::table::{CancelJob, DispatchJob, Method};
use crate::render;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::OnceCell;

const DISPATCH: &str = DispatchJob::NAME;

pub struct WorkerServer {
    tools: Vec<Tool>,
    /// The worker starts at the first tool call, once the client's roots can be asked for.
    started: Arc<OnceCell<Result<Started, String>>>,
    start: super::start::Starter,
    /// `worker.max_in_flight`: tool calls running at once; more wait for a place.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl WorkerServer {
    pub fn new(
        start: super::start::Starter,
        started: Arc<OnceCell<Result<Started, String>>>,
        in_flight: usize,
    ) -> Self {
        WorkerServer {
            tools: seam::tools().into_iter().map(to_tool).collect(),
            started,
            start,
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                in_flight.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
        }
    }

    async fn methods(&self, context: &RequestContext<RoleServer>) -> Result<&Arc<Methods>, String> {
        self.started
            .get_or_init(|| self.start.start(context.peer.clone()))
            .await
            .as_ref()
            .map(|started| &started.methods)
            .map_err(Clone::clone)
    }
}

/// One descriptor of the worker's table as an MCP tool.
fn to_tool(descriptor: crate::protocol::ToolDescriptor) -> Tool {
    let object = |schema: Value| -> JsonObject {
        match schema {
            Value::Object(map) => map,
            _ => JsonObject::new(),
        }
    };
    let mut tool = Tool::new(
        descriptor.name,
        descriptor.description,
        object(descriptor.input_schema),
    );
    tool.output_schema = Some(Arc::new(object(descriptor.output_schema)));
    tool
}

fn tool_error(text: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

impl ServerHandler for WorkerServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "opencode-worker",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Runs commands in disposable, kernel-sandboxed sessions with CPU, memory, time \
                 and output limits. Start with worker_dispatch_job (give wait_ms to get the \
                 result in the reply); follow a long job with worker_get_status and \
                 worker_collect_output.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        if !self.tools.iter().any(|tool| tool.name == name) {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`; tools/list names the tools"),
                Some(json!({"field": "name", "tool": name})),
            ));
        }
        let Ok(_place) = self.in_flight.acquire().await else {
            return Err(McpError::internal_error("the server is stopping", None));
        };
        let methods = match self.methods(&context).await {
            Ok(methods) => methods.clone(),
            Err(reason) => {
                return Ok(tool_error(format!(
                    "{name} failed: the worker could not start: {reason}. Fix the worker's \
                     configuration (see its log on stderr) and restart the MCP server."
                )));
            }
        };
        let mut args = Value::Object(request.arguments.unwrap_or_default());
        let mut job_id = None;
        if name == DISPATCH {
            // Known before the job exists, so the job can be followed and cancelled while
            // the call waits.
            let id = args
                .get("job_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            args["job_id"] = Value::String(id.clone());
            job_id = Some(id);
        }
        let reporter = match (&job_id, context.meta.get_progress_token()) {
            (Some(id), Some(token)) => Some(progress::spawn(
                methods.clone(),
                context.peer.clone(),
                token,
                id.clone(),
            )),
            _ => None,
        };
        let began =
            (name == DISPATCH && args.get("wait_ms").is_some()).then(std::time::Instant::now);
        let outcome = tokio::select! {
            outcome = methods.call(&name, &args) => Some(outcome),
            _ = context.ct.cancelled() => None,
        };
        if let Some(reporter) = reporter {
            reporter.cancel();
        }
        let Some(outcome) = outcome else {
            if let Some(id) = job_id {
                tracing::info!(job_id = %id, "the MCP client cancelled the call; cancelling the job");
                let _ = methods
                    .call(
                        CancelJob::NAME,
                        &json!({"job_id": id, "reason": "the MCP client cancelled the request"}),
                    )
                    .await;
            }
            return Err(McpError::internal_error("cancelled by the client", None));
        };
        Ok(match outcome {
            Ok(value) => {
                let waited = began.map(|began| began.elapsed());
                let text = render::result_waited(&name, &value, waited);
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(value);
                result.into()
            }
            Err(error) => tool_error(render::error_text(&name, &error)),
        })
    }
}
