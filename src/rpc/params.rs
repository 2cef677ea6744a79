//! Parameter decoding that names the exact field at fault, for -32602 `data.field`.

use crate::error::WorkerError;
use jsonrpsee::types::Params;
use serde::de::DeserializeOwned;

pub fn decode<T: DeserializeOwned>(params: &Params<'_>) -> Result<T, WorkerError> {
    let text = params.as_str().unwrap_or("{}");
    if text.trim_start().starts_with('[') {
        return Err(WorkerError::invalid_params(
            "params",
            "must be an object with named fields, not an array",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." {
            "params".to_owned()
        } else {
            path
        };
        WorkerError::invalid_params(field, without_position(&error.into_inner().to_string()))
    })
}

/// serde appends " at line 1 column 43"; for a one-line request that only adds noise.
fn without_position(reason: &str) -> String {
    match reason.rfind(" at line ") {
        Some(at) if reason[at..].contains(" column ") => reason[..at].to_owned(),
        _ => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::JobSpec;

    #[test]
    fn names_nested_fields() {
        let params = Params::new(Some(r#"{"command":"x","limits":{"memory":"12XB"}}"#));
        let error = decode::<JobSpec>(&params).unwrap_err();
        assert_eq!(error.data()["field"], "limits.memory");
        assert!(!error.data()["reason"].as_str().unwrap().contains("column"));
        let params = Params::new(Some(r#"{"command":"x","bogus":1}"#));
        let error = decode::<JobSpec>(&params).unwrap_err();
        assert!(error.data()["reason"].as_str().unwrap().contains("bogus"));
    }
}
