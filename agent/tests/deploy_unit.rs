//! The systemd unit in `deploy/` is valid (`systemd-analyze verify`) and
//! carries the hardening SECURITY.md describes.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

const UNIT: &str = include_str!("../../deploy/qube-agent.service");

#[test]
fn unit_has_the_documented_hardening() {
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=120s",
        "Restart=on-failure",
        "User=qube-agent",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/qube-agent",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "StateDirectoryMode=0700",
        "LimitCORE=0",
    ] {
        assert!(UNIT.lines().any(|l| l.trim() == line), "missing {line}");
    }
}

/// Needs `systemd-analyze` (Debian package `systemd`, which `.ci/run`
/// installs when it is missing): without it this test fails rather than
/// passing unchecked.
#[test]
fn systemd_accepts_the_unit() {
    let out = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "systemd-analyze is needed to check deploy/qube-agent.service ({e}); \
                 install it with `apt-get install --no-install-recommends systemd`"
            )
        });
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("qube-agent.service");
    std::fs::write(
        &unit,
        UNIT.replace(
            "/usr/local/bin/qube-agent",
            env!("CARGO_BIN_EXE_qube-agent"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze: {stderr}"
    );
}
