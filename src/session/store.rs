//! Session dirs off the hot path. On ext4, INIT's five mkdirs and DESTROY's recursive removal
//! cost about a millisecond per job (measured with `worker_get_metrics` phase latencies), more
//! than spawning the job. So a janitor thread keeps a few empty session skeletons ready (INIT is
//! one rename) and deletes destroyed sessions after DESTROY has moved them out of reach (one
//! rename into a trash name that no job can know).

use super::{SessionDirs, remove_session};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

enum Chore {
    Refill,
    Remove(PathBuf),
}

pub struct SessionStore {
    base: PathBuf,
    spares: Arc<Mutex<Vec<PathBuf>>>,
    chores: Mutex<Sender<Chore>>,
    closed: Arc<AtomicBool>,
    /// Without spares there is nothing to refill: the janitor is not woken for it.
    refills: bool,
}

impl SessionStore {
    pub fn new(base: PathBuf, spares_wanted: usize) -> SessionStore {
        super::dirs::spread_sessions(&base);
        let spares: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (chores, inbox) = channel::<Chore>();
        let janitor = Janitor {
            base: base.clone(),
            spares: spares.clone(),
            closed: closed.clone(),
            wanted: spares_wanted,
        };
        let spawned = std::thread::Builder::new()
            .name("session-janitor".into())
            .spawn(move || {
                crate::sandbox::background_thread();
                for chore in inbox {
                    match chore {
                        Chore::Refill => janitor.refill(),
                        Chore::Remove(path) => {
                            if let Err(error) = remove_session(&path) {
                                tracing::error!(%error, dir = %path.display(), "could not remove a destroyed session");
                            }
                        }
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no janitor thread: session dirs are made and removed inline");
        }
        let store = SessionStore {
            base,
            spares,
            chores: Mutex::new(chores),
            closed,
            refills: spares_wanted > 0,
        };
        store.refill();
        store
    }

    fn refill(&self) {
        if self.refills {
            self.send(Chore::Refill);
        }
    }

    fn send(&self, chore: Chore) -> bool {
        self.chores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(chore)
            .is_ok()
    }

    /// INIT: the session's dirs, from a spare skeleton when one is ready.
    pub fn create(&self, session_id: &str) -> std::io::Result<SessionDirs> {
        let dirs = SessionDirs::plan(&self.base, session_id);
        let spare = self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        self.refill();
        if let Some(spare) = spare
            && std::fs::rename(&spare, &dirs.root).is_ok()
        {
            return Ok(dirs);
        }
        dirs.create()?;
        Ok(dirs)
    }

    /// DESTROY: moves the session out of reach at once; the janitor deletes it. Returns false
    /// when the caller must remove it itself.
    pub fn destroy(&self, dirs: &SessionDirs) -> bool {
        let Some(name) = dirs.root.file_name() else {
            return false;
        };
        let trash = self.base.join(format!(".trash-{}", name.to_string_lossy()));
        match std::fs::rename(&dirs.root, &trash) {
            Ok(()) => self.send(Chore::Remove(trash.clone())) || remove_session(&trash).is_ok(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(_) => false,
        }
    }

    /// No more spares: the base dir is about to be removed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
}

struct Janitor {
    base: PathBuf,
    spares: Arc<Mutex<Vec<PathBuf>>>,
    closed: Arc<AtomicBool>,
    wanted: usize,
}

impl Janitor {
    fn refill(&self) {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            if self.spares.lock().unwrap_or_else(|p| p.into_inner()).len() >= self.wanted {
                return;
            }
            let name = format!(".spare-{}", uuid::Uuid::now_v7().simple());
            let skeleton = SessionDirs::plan(&self.base, &name);
            if skeleton.create().is_err() {
                return;
            }
            self.spares
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(skeleton.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_come_from_spares_and_leave_through_trash() {
        let base = tempfile::tempdir().unwrap();
        let store = SessionStore::new(base.path().to_owned(), 2);
        let dirs = store.create("s1").unwrap();
        for dir in [&dirs.work, &dirs.output, &dirs.tmp, &dirs.home] {
            assert!(dir.is_dir());
        }
        std::fs::write(dirs.work.join("f"), "x").unwrap();
        assert!(store.destroy(&dirs));
        assert!(!dirs.root.exists());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let names: Vec<String> = std::fs::read_dir(base.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if names.iter().all(|n| n.starts_with(".spare-")) && names.len() == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{names:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
