//! `opencode-worker doctor`: what this host enforces, and the concrete fix for each gap.

use super::host::Host;
use super::report::{LayerReport, LayerState};
use std::fmt::Write;

fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .ok()
        .map(|s| s.trim().to_string())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn userns_fix() -> String {
    if sysctl("kernel.apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces (Ubuntu >= 23.10): add a profile \
                for the worker binary granting `userns,` in /etc/apparmor.d/opencode-worker \
                (`abi <abi/4.0>, include <tunables/global> profile opencode-worker \
                /path/to/opencode-worker flags=(unconfined) { userns, }`) and `apparmor_parser -r` \
                it, or `sysctl kernel.apparmor_restrict_unprivileged_userns=0`"
            .into();
    }
    if sysctl("kernel.unprivileged_userns_clone").as_deref() == Some("0") {
        return "`sysctl kernel.unprivileged_userns_clone=1` (Debian/Arch hardening knob)".into();
    }
    if sysctl("user.max_user_namespaces").as_deref() == Some("0") {
        return "`sysctl user.max_user_namespaces=15000`".into();
    }
    "inside a container: run it with `--security-opt seccomp=unconfined` or allow \
     unshare/clone(CLONE_NEWUSER) in its seccomp profile, or run the worker as root"
        .into()
}

fn fix(layer: &LayerReport) -> Option<String> {
    if layer.state == LayerState::Active {
        return None;
    }
    Some(match layer.name.as_str() {
        "filesystem" => "use a kernel >= 5.13 with Landlock enabled (`lsm=landlock,...` on the \
                         kernel command line; check /sys/kernel/security/lsm)"
            .into(),
        "network" | "unix_sockets" | "privileges" => userns_fix(),
        "syscall_filter" => "use a kernel built with CONFIG_SECCOMP_FILTER on x86_64".into(),
        "process_tree" | "signals" => format!(
            "either allow user namespaces ({}) or give the worker a writable cgroup v2 \
             (`systemd-run --user --scope -p Delegate=yes opencode-worker ...`)",
            userns_fix()
        ),
        "memory" | "pids" | "cpu" | "accounting" => "give the worker a delegated cgroup v2: \
             start it as `systemd-run --user --scope -p Delegate=yes opencode-worker ...` (it \
             moves itself into a leaf and hands memory/pids/cpu to per-job cgroups), or run it as \
             root on a host whose cgroup v1 or v2 memory and pids controllers are mounted"
            .into(),
        _ => return None,
    })
}

/// A plain-text report for people: one line per layer and limit, each gap with its fix.
pub fn doctor_report(host: &Host) -> String {
    let i = &host.inner;
    let report = host.report();
    let mut out = String::new();
    let _ = writeln!(out, "opencode-worker sandbox doctor");
    let _ = writeln!(
        out,
        "kernel {}; running as uid {}{}",
        kernel(),
        i.uid,
        if i.root { " (root)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Landlock: {}",
        match &i.landlock {
            Ok(abi) => format!("ABI {abi}, enforcement verified"),
            Err(why) => why.clone(),
        }
    );
    let _ = writeln!(
        out,
        "seccomp: {}",
        i.seccomp
            .as_ref()
            .map_or_else(|w| w.clone(), |_| "filters work".into())
    );
    let ns = |r: &Result<(), String>| {
        r.as_ref()
            .map_or_else(|w| format!("no ({w})"), |_| "yes".into())
    };
    let _ = writeln!(
        out,
        "namespaces: user {}, mount {}, network {}, ipc {}, pid {}, procfs {}",
        ns(&i.ns.user),
        ns(&i.ns.mount),
        ns(&i.ns.net),
        ns(&i.ns.ipc),
        ns(&i.ns.pid),
        ns(&i.ns.proc_mount)
    );
    if let Some(value) = sysctl("kernel.apparmor_restrict_unprivileged_userns") {
        let _ = writeln!(out, "AppArmor unprivileged userns restriction: {value}");
    }
    let layout = &i.cgroups.layout;
    let _ = writeln!(
        out,
        "cgroups: v2 {}; v1 memory {}, pids {}, cpu {}",
        layout
            .v2
            .as_ref()
            .map_or("not writable".into(), |v2| format!(
                "{} (memory {}, pids {}, cpu {}, cgroup.kill {})",
                v2.base.display(),
                v2.memory,
                v2.pids,
                v2.cpu,
                v2.kill
            )),
        layout
            .memory_v1
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        layout
            .pids_v1
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        layout
            .cpu_v1
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
    );
    for note in &layout.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let _ = writeln!(out, "probe took {:.2} ms", i.probe_ms);
    let _ = writeln!(out);
    for (title, list) in [("layers", &report.layers), ("limits", &report.limits)] {
        let _ = writeln!(out, "{title}:");
        for layer in list {
            let state = match layer.state {
                LayerState::Active => "active",
                LayerState::Degraded => "DEGRADED",
                LayerState::Unavailable => "UNAVAILABLE",
            };
            let _ = writeln!(out, "  {:<15} {:<11} {}", layer.name, state, layer.detail);
            if let Some(fix) = fix(layer) {
                let _ = writeln!(out, "  {:<15} {:<11} fix: {fix}", "", "");
            }
        }
    }
    let hidden = i.hidden_report();
    if !hidden.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "hidden from jobs (add more with `isolation.hidden`):");
        let mut categories: Vec<&str> = Vec::new();
        for entry in &hidden {
            if !categories.contains(&entry.category.as_str()) {
                categories.push(&entry.category);
            }
        }
        for category in categories {
            let paths: Vec<&str> = hidden
                .iter()
                .filter(|h| h.category == category)
                .map(|h| h.path.as_str())
                .collect();
            let _ = writeln!(out, "  {:<18} {}", category, paths.join(" "));
        }
    }
    let gaps = host.strict_gaps();
    let _ = writeln!(out);
    if gaps.is_empty() {
        let _ = writeln!(out, "profile strict: available on this host");
    } else {
        let names: Vec<&str> = gaps.iter().map(|g| g.name.as_str()).collect();
        let _ = writeln!(
            out,
            "profile strict: NOT available (missing: {})",
            names.join(", ")
        );
    }
    out
}
