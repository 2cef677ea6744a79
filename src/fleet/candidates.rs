//! Which workers a job may run on, by the `worker` and `labels` it names.

use crate::error::WorkerError;
use crate::protocol::JobSpec;

/// Which of the `(name, labels)` workers a job may run on.
pub fn candidates<'a>(
    workers: impl Iterator<Item = (&'a str, &'a [String])>,
    spec: &JobSpec,
) -> Result<Vec<usize>, WorkerError> {
    let wanted: &[String] = spec.labels.as_deref().unwrap_or_default();
    let mut named = false;
    let mut chosen = Vec::new();
    let mut names = Vec::new();
    for (index, (name, labels)) in workers.enumerate() {
        names.push(name.to_owned());
        if let Some(worker) = &spec.worker {
            if worker != name {
                continue;
            }
            named = true;
        }
        if wanted.iter().all(|label| labels.contains(label)) {
            chosen.push(index);
        }
    }
    if let Some(worker) = &spec.worker
        && !named
    {
        return Err(WorkerError::invalid_params(
            "worker",
            format!(
                "no worker is named `{worker}`; the workers are: {}",
                names.join(", ")
            ),
        ));
    }
    if chosen.is_empty() {
        return Err(WorkerError::invalid_params(
            "labels",
            format!(
                "no worker{} carries every label of {:?}",
                spec.worker
                    .as_deref()
                    .map(|w| format!(" named `{w}`"))
                    .unwrap_or_default(),
                wanted
            ),
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(worker: Option<&str>, labels: &[&str]) -> JobSpec {
        let mut spec: JobSpec =
            serde_json::from_value(serde_json::json!({"command": "true"})).unwrap();
        spec.worker = worker.map(str::to_owned);
        spec.labels = (!labels.is_empty()).then(|| labels.iter().map(|l| l.to_string()).collect());
        spec
    }

    fn fleet() -> Vec<(String, Vec<String>)> {
        vec![
            ("here".into(), vec!["small".into()]),
            ("big".into(), vec!["gpu".into(), "large".into()]),
            ("other".into(), vec!["gpu".into()]),
        ]
    }

    fn pick(spec: &JobSpec) -> Result<Vec<usize>, WorkerError> {
        let workers = fleet();
        candidates(
            workers.iter().map(|(n, l)| (n.as_str(), l.as_slice())),
            spec,
        )
    }

    fn field(error: WorkerError) -> String {
        match error {
            WorkerError::InvalidParams { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn by_name_by_labels_or_any() {
        let cases: &[(Option<&str>, &[&str], &[usize])] = &[
            (None, &[], &[0, 1, 2]),
            (Some("big"), &[], &[1]),
            (None, &["gpu"], &[1, 2]),
            (None, &["gpu", "large"], &[1]),
            (Some("other"), &["gpu"], &[2]),
        ];
        for (worker, labels, wanted) in cases {
            assert_eq!(
                pick(&spec(*worker, labels)).unwrap(),
                *wanted,
                "{worker:?} {labels:?}"
            );
        }
    }

    #[test]
    fn an_unknown_name_or_an_unmatched_label_names_its_field() {
        assert_eq!(
            field(pick(&spec(Some("nowhere"), &[])).unwrap_err()),
            "worker"
        );
        assert_eq!(field(pick(&spec(None, &["tpu"])).unwrap_err()), "labels");
        assert_eq!(
            field(pick(&spec(Some("here"), &["gpu"])).unwrap_err()),
            "labels"
        );
    }
}
