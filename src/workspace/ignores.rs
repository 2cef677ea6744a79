//! The project's ignore rules, read the way git reads them, for the change set (what is only
//! counted) and the copy fallback (what is not copied).

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The project's ignore rules: `.gitignore` in every directory (deeper files win) and
/// `.git/info/exclude`; everything in `.git/` counts as ignored.
pub struct Ignores {
    project: PathBuf,
    by_dir: HashMap<PathBuf, Option<Gitignore>>,
}

impl Ignores {
    pub fn new(project: &Path) -> Ignores {
        Ignores {
            project: project.to_path_buf(),
            by_dir: HashMap::new(),
        }
    }

    pub fn ignored(&mut self, rel: &Path, is_dir: bool) -> bool {
        if rel.starts_with(".git") {
            return true;
        }
        let full = self.project.join(rel);
        let mut verdict = false;
        let mut dir = PathBuf::new();
        let parents: Vec<PathBuf> = rel
            .parent()
            .map(|p| p.components().map(|c| c.as_os_str().into()).collect())
            .unwrap_or_default();
        for next in std::iter::once(None).chain(parents.iter().map(Some)) {
            if let Some(component) = next {
                dir.push(component);
            }
            if let Some(matcher) = self.matcher(&dir) {
                match matcher.matched_path_or_any_parents(&full, is_dir) {
                    Match::Ignore(_) => verdict = true,
                    Match::Whitelist(_) => verdict = false,
                    Match::None => {}
                }
            }
        }
        verdict
    }

    fn matcher(&mut self, dir: &Path) -> Option<&Gitignore> {
        let project = &self.project;
        self.by_dir
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                let root = project.join(dir);
                let mut builder = GitignoreBuilder::new(&root);
                let mut any = false;
                let mut files = vec![root.join(".gitignore")];
                if dir.as_os_str().is_empty() {
                    files.push(root.join(".git/info/exclude"));
                }
                for file in files {
                    if file.is_file() {
                        any |= builder.add(file).is_none();
                    }
                }
                any.then(|| builder.build().ok()).flatten()
            })
            .as_ref()
    }
}
