//! `"render": true` in a tool method's params: the reply also carries the text a model reads
//! (`result.rendered`, or `error.data.rendered`), rendered here, so a client such as the OpenCode
//! plugin shows exactly what MCP shows. A request option, not a tool argument: the tool
//! schemas leave it out because a model never sets it.

use serde_json::{Map, Value};
use std::time::Instant;

const PARAM: &str = "render";
// Not `text`: a Prometheus metrics result already has one.
const TEXT: &str = "rendered";

/// A request that named `render`: its params without it, and whether text was asked for.
pub struct Rendering {
    pub params: String,
    wanted: bool,
    waited_since: Option<Instant>,
}

/// `Some` when the params of a tool method name `render` (`false` is taken out too, so no
/// handler ever sees the option).
pub fn requested(method: &str, params: Option<&str>) -> Option<Rendering> {
    let params = params?;
    // Cheap test first: most requests do not name it, and some are megabytes.
    if !params.contains("\"render\"") || !crate::protocol::tools::tool_names().any(|t| t == method)
    {
        return None;
    }
    let mut object: Map<String, Value> = serde_json::from_str(params).ok()?;
    let wanted = object.remove(PARAM)? == Value::Bool(true);
    let waited = method
        == <crate::protocol::table::DispatchJob as crate::protocol::table::Method>::NAME
        && object.contains_key("wait_ms");
    Some(Rendering {
        params: Value::Object(object).to_string(),
        wanted,
        waited_since: waited.then(Instant::now),
    })
}

impl Rendering {
    /// The reply line, with the text added when it was asked for.
    pub fn attach(&self, method: &str, line: String) -> String {
        if !self.wanted {
            return line;
        }
        let Ok(mut reply) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        let waited = self.waited_since.map(|since| since.elapsed());
        if let Some(result) = reply.get_mut("result").filter(|r| r.is_object()) {
            let text = super::result_waited(method, result, waited);
            result[TEXT] = Value::String(text);
        } else if let Some(error) = reply.get_mut("error") {
            let text = super::error_text(method, error);
            if !error.get("data").is_some_and(Value::is_object) {
                error["data"] = Value::Object(Map::new());
            }
            error["data"][TEXT] = Value::String(text);
        }
        reply.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_option_out_and_adds_the_text() {
        let r = requested("worker_get_status", Some(r#"{"job_id":"j","render":true}"#)).unwrap();
        assert_eq!(r.params, r#"{"job_id":"j"}"#);
        let line = r.attach(
            "worker_get_status",
            r#"{"jsonrpc":"2.0","id":1,"result":{"job_id":"j","status":"running"}}"#.into(),
        );
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert!(
            reply["result"]["rendered"]
                .as_str()
                .unwrap()
                .starts_with("job j | status: running")
        );
        let line = r.attach(
            "worker_get_status",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"unknown job","data":{"job_id":"j"}}}"#.into(),
        );
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert!(
            reply["error"]["data"]["rendered"]
                .as_str()
                .unwrap()
                .contains("Unknown job \"j\"")
        );
    }

    #[test]
    fn leaves_other_requests_alone() {
        assert!(requested("worker_get_status", Some(r#"{"job_id":"render"}"#)).is_none());
        assert!(requested("initialize", Some(r#"{"render":true}"#)).is_none());
        let off = requested(
            "worker_get_status",
            Some(r#"{"job_id":"j","render":false}"#),
        )
        .unwrap();
        assert_eq!(off.params, r#"{"job_id":"j"}"#);
        assert_eq!(off.attach("worker_get_status", "x".into()), "x");
    }
}
