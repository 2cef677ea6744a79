//! Starting the worker at the first tool call, so the client's roots (asked for once the
//! session is up) can become the candidate workspace roots.

use super::roots;
use super::seam::Methods;
use crate::config::Config;
use crate::fleet::Fleet;
use crate::worker::Worker;
use rmcp::{Peer, RoleServer};
use std::sync::{Arc, Mutex};

pub struct Started {
    pub worker: Arc<Worker>,
    pub fleet: Arc<Fleet>,
    pub methods: Arc<Methods>,
}

/// Holds the configuration until the one start.
pub struct Starter {
    config: Mutex<Option<Config>>,
}

impl Starter {
    pub fn new(config: Config) -> Self {
        Starter {
            config: Mutex::new(Some(config)),
        }
    }

    pub async fn start(&self, peer: Peer<RoleServer>) -> Result<Started, String> {
        let taken = self.config.lock().map(|mut c| c.take()).ok().flatten();
        let Some(mut config) = taken else {
            return Err("the worker was already started".into());
        };
        roots::apply(&peer, &mut config.workspace).await;
        let worker = Worker::start(config).map_err(|error| {
            tracing::error!(%error, "could not start");
            error.to_string()
        })?;
        let worker = Arc::new(worker);
        tracing::info!(worker_id = %worker.worker_id, base_dir = %worker.pool.base_dir().display(), "worker started for MCP");
        let fleet = Arc::new(Fleet::new(worker.clone()));
        fleet.start();
        let methods = Arc::new(Methods::new(fleet.clone()));
        Ok(Started {
            worker,
            fleet,
            methods,
        })
    }
}
