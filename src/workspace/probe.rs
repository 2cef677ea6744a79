//! `doctor`: can this host mount an overlay the way an `overlay` job does (unprivileged, in a
//! new user+mount namespace)? Tried for real in a throwaway child, not guessed from the kernel
//! version.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

/// `Ok(())` when a child could mount an overlayfs in its own user+mount namespace.
pub fn overlay() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    for sub in ["lower", "upper", "work"] {
        std::fs::create_dir(dir.path().join(sub)).map_err(|e| format!("temp dir: {e}"))?;
    }
    let path = |sub: &str| dir.path().join(sub).display().to_string();
    let options = CString::new(format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        path("lower"),
        path("upper"),
        path("work")
    ))
    .map_err(|e| e.to_string())?;
    let target =
        CString::new(dir.path().join("lower").as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{uid} {uid} 1\n");
    let gid_map = format!("{gid} {gid} 1\n");
    let mut command = std::process::Command::new("/bin/true");
    command.stdin(std::process::Stdio::null());
    // SAFETY: the closure makes only system calls on memory prepared above.
    unsafe {
        command.pre_exec(move || {
            check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
            write(c"/proc/self/setgroups", b"deny")?;
            write(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write(c"/proc/self/gid_map", gid_map.as_bytes())?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                options.as_ptr().cast(),
            ))?;
            Ok(())
        });
    }
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("the probe child failed: {status}")),
        Err(error) => Err(format!(
            "unprivileged overlayfs in a user+mount namespace: {error}"
        )),
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn write(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: NUL-terminated path; the buffer outlives the call.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `overlay()`, tried once per worker.
fn overlay_once() -> Result<(), String> {
    static PROBED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(overlay).clone()
}

/// Whether this host mounted an overlayfs in a user+mount namespace (tried once per worker).
pub fn overlay_available() -> bool {
    overlay_once().is_ok()
}

/// Why an `overlay` job under `profile` works on a copy of the project instead of an
/// overlayfs here; `None` when it gets the overlayfs.
pub fn copy_reason(
    config: &super::WorkspaceConfig,
    host: &crate::sandbox::Host,
    profile: crate::sandbox::Profile,
) -> Option<String> {
    use crate::sandbox::Profile;
    if config.overlay == super::config::OverlayMechanism::Copy {
        return Some("the worker's config sets `workspace.overlay = \"copy\"`".into());
    }
    if profile.at_least(host.config().profile) == Profile::None || !host.mount_namespace() {
        return Some(
            "no mount namespace for this job (profile `none`, or the host refuses one)".into(),
        );
    }
    overlay_once()
        .err()
        .map(|why| format!("this host cannot mount an overlayfs for the job ({why})"))
}

/// The doctor's lines about workspaces, with the fix when overlay jobs cannot run.
pub fn doctor_line(config: &super::WorkspaceConfig) -> String {
    let mut out = mechanism_line(config);
    let caches: Vec<String> = super::caches::user_caches()
        .into_iter()
        .map(|(dir, _)| {
            let shared = config.shared_caches.iter().any(|s| dir.starts_with(s));
            format!("{}{}", dir.display(), if shared { " (shared)" } else { "" })
        })
        .collect();
    out.push_str(&match (caches.is_empty(), overlay().is_ok()) {
        (true, _) => "toolchain caches: none found (~/.cargo/registry, ~/.npm, ~/.cache/pip, go \
                      modules)\n"
            .to_owned(),
        (false, true) => format!(
            "toolchain caches: {}; workspace jobs read them and write to the worker's own cache \
             layer (shared ones in place)\n",
            caches.join(", ")
        ),
        (false, false) => format!(
            "toolchain caches: {}; read-only to workspace jobs here (no overlays)\n",
            caches.join(", ")
        ),
    });
    out
}

fn mechanism_line(config: &super::WorkspaceConfig) -> String {
    let copy = format!(
        "overlay jobs fall back to a copy of the project (reported as `degraded`; projects over \
         workspace.copy_max_files = {} or copy_max_bytes = {} are refused; `strict` jobs refuse \
         the copy)",
        config.copy_max_files, config.copy_max_bytes
    );
    match (overlay(), config.overlay) {
        (Ok(()), super::config::OverlayMechanism::Auto) => {
            "workspaces: read, write and overlay available (overlayfs in a user namespace \
             verified by a mount)\n"
                .into()
        }
        (Ok(()), super::config::OverlayMechanism::Copy) => format!(
            "workspaces: read and write available; {copy} because the config sets \
             workspace.overlay = \"copy\". Fix: this host can mount overlays (verified): set \
             workspace.overlay = \"auto\"\n"
        ),
        (Err(why), _) => format!(
            "workspaces: overlayfs unavailable here ({why}): {copy}; read and write still work \
             where a mount namespace is available. Fix: a kernel >= 5.11 with overlayfs, and \
             unprivileged user namespaces allowed (see the `privileges` fix above)\n"
        ),
    }
}
