//! Slipway as Debian packages and systemd services: every unit in
//! `packaging/systemd/` passes `systemd-analyze verify` (no warning about
//! it) and stays under its exposure score (`systemd-analyze security`);
//! the three packages `scripts/test` made (`SLIPWAY_TEST_DEBS`) hold the
//! binaries, units, conffiles and maintainer scripts; and they install into
//! a clean minimal Debian (`SLIPWAY_TEST_DEBIAN_ROOT`, a cached
//! debootstrap, copied per test), where the users exist, the binaries run
//! and `apptracker init` makes an installation from the packaged config as
//! the service's user. No systemd runs here: starting the units is left to
//! real hosts.

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_tests::services::{DEBIAN_ROOT_ENV, DEBS_ENV, dir_from_env, tool};

/// Each unit, the binary its ExecStart runs, and the highest exposure
/// `systemd-analyze security` may give it (0-100, its score times ten):
/// a change that weakens a unit's sandbox must lower this or say why.
const UNITS: [(&str, &str, u32); 4] = [
    ("slipway-apptracker.service", "apptracker", 45),
    ("slipway-packer.service", "packer", 45),
    ("slipway-grabber.service", "grabber", 78),
    ("slipway-versionchecker.service", "versionchecker", 30),
];

/// The three packages: name, what `/usr/bin` gets, which units, which
/// conffiles, which users the postinst makes.
struct Deb {
    name: &'static str,
    binaries: &'static [&'static str],
    units: &'static [&'static str],
    conffiles: &'static [&'static str],
    users: &'static [&'static str],
}

const DEBS: [Deb; 3] = [
    Deb {
        name: "slipway-control-plane",
        binaries: &["apptracker", "packer"],
        units: &["slipway-apptracker.service", "slipway-packer.service"],
        conffiles: &["/etc/slipway/apptracker.toml", "/etc/slipway/packer.env"],
        users: &["slipway"],
    },
    Deb {
        name: "slipway-host",
        binaries: &["grabber", "versionchecker"],
        units: &["slipway-grabber.service", "slipway-versionchecker.service"],
        conffiles: &["/etc/slipway/host.env", "/etc/slipway/trusted.keys"],
        users: &["slipway-app"],
    },
    Deb {
        name: "slipway-cli",
        binaries: &["deploy"],
        units: &[],
        conffiles: &[],
        users: &[],
    },
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}

/// Runs a command to its end: (success, stdout and stderr together).
fn run(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// A file tree `systemd-analyze --root` can load units from: the machine's
/// own system units (the targets ours refer to), ours, and stand-ins for
/// the binaries (verify checks that ExecStart's program exists).
fn unit_root(units_dir: &Path) -> anyhow::Result<tempfile::TempDir> {
    let root = tempfile::tempdir()?;
    let system = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(root.path().join("usr/lib/systemd"))?;
    std::fs::create_dir_all(root.path().join("usr/bin"))?;
    std::os::unix::fs::symlink("usr/lib", root.path().join("lib"))?;
    std::os::unix::fs::symlink("usr/bin", root.path().join("bin"))?;
    let (ok, out) = run(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(&system))?;
    anyhow::ensure!(ok, "cannot copy the system's units: {out}");
    for (unit, binary, _) in UNITS {
        std::fs::copy(units_dir.join(unit), system.join(unit))?;
        let exe = root.path().join("usr/bin").join(binary);
        std::fs::write(&exe, "#!/bin/sh\nexit 0\n")?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(root)
}

/// What `systemd-analyze verify` says against `unit` under `root`: `None`
/// when it accepts it without a word about it. Unknown keys and bad values
/// are only warnings to systemd (exit 0), so any line naming the unit fails.
fn verify(analyze: &Path, root: &Path, unit: &str) -> anyhow::Result<Option<String>> {
    let (ok, out) = run(Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(format!("/usr/lib/systemd/system/{unit}")))?;
    let stem = unit.trim_end_matches(".service");
    let about_it: Vec<&str> = out.lines().filter(|l| l.contains(stem)).collect();
    Ok((!ok || !about_it.is_empty()).then(|| out.clone()))
}

#[test]
fn every_unit_passes_systemd_analyze_verify_and_keeps_its_sandbox() -> anyhow::Result<()> {
    let Some(analyze) = tool("systemd-analyze", "systemd") else {
        return Ok(());
    };
    let units_dir = repo_root().join("packaging/systemd");
    let root = unit_root(&units_dir)?;
    for (unit, _, max_exposure) in UNITS {
        if let Some(complaint) = verify(&analyze, root.path(), unit)? {
            panic!("systemd-analyze verify {unit}:\n{complaint}");
        }
        let text = std::fs::read_to_string(units_dir.join(unit))?;
        assert!(text.contains("\nType=notify\n"), "{unit} waits for READY=1");
        let (ok, out) = run(Command::new(&analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(format!("--threshold={max_exposure}"))
            .arg(format!("/usr/lib/systemd/system/{unit}")))?;
        let overall = out
            .lines()
            .find(|l| l.contains("Overall exposure"))
            .unwrap_or("");
        eprintln!("{overall}");
        assert!(ok, "{unit} is more exposed than {max_exposure}/100:\n{out}");
    }

    // The check finds what it is there for: a misspelt key, a bad value.
    let system = root.path().join("usr/lib/systemd/system");
    let unit = "slipway-packer.service";
    let good = std::fs::read_to_string(system.join(unit))?;
    for (broken, what) in [
        ("ProtecSystem=strict\n", "a misspelt key"),
        ("Restart=sometimes\n", "a bad value"),
    ] {
        let text = good.replace("UMask=0077\n", &format!("UMask=0077\n{broken}"));
        std::fs::write(system.join(unit), text)?;
        assert!(
            verify(&analyze, root.path(), unit)?.is_some(),
            "verify misses {what}"
        );
    }
    Ok(())
}

/// The package `name`'s file among `debs`.
fn deb_file(debs: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("{name}_");
    std::fs::read_dir(debs)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .ok_or_else(|| anyhow::anyhow!("no {prefix}*.deb in {}", debs.display()))
}

#[test]
fn the_debs_hold_binaries_units_conffiles_and_make_their_users() -> anyhow::Result<()> {
    let Some(debs) = dir_from_env(DEBS_ENV, "the .debs scripts/test made") else {
        return Ok(());
    };
    for deb in DEBS {
        let file = deb_file(&debs, deb.name)?;
        let (ok, contents) = run(Command::new("dpkg-deb").arg("--contents").arg(&file))?;
        assert!(ok, "{contents}");
        let has = |path: &str| {
            contents
                .lines()
                .any(|l| l.ends_with(&format!(" .{path}")) || l.contains(&format!(" .{path} ")))
        };
        for b in deb.binaries {
            assert!(
                has(&format!("/usr/bin/{b}")),
                "{} lacks /usr/bin/{b}:\n{contents}",
                deb.name
            );
        }
        for u in deb.units {
            assert!(
                has(&format!("/lib/systemd/system/{u}")),
                "{} lacks its unit {u}:\n{contents}",
                deb.name
            );
        }
        let (ok, info) = run(Command::new("dpkg-deb").arg("--info").arg(&file))?;
        assert!(ok, "{info}");
        assert!(info.contains(&format!("Package: {}", deb.name)), "{info}");

        let control = tempfile::tempdir()?;
        let (ok, out) = run(Command::new("dpkg-deb")
            .arg("--control")
            .arg(&file)
            .arg(control.path()))?;
        assert!(ok, "{out}");
        let conffiles =
            std::fs::read_to_string(control.path().join("conffiles")).unwrap_or_default();
        for c in deb.conffiles {
            assert!(
                conffiles.lines().any(|l| l == *c),
                "{} does not mark {c} a conffile:\n{conffiles}",
                deb.name
            );
            assert!(has(c), "{} lacks {c}", deb.name);
        }
        let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap_or_default();
        for user in deb.users {
            assert!(
                postinst.contains("useradd --system") && postinst.contains(&format!(" {user}\n")),
                "{}'s postinst does not make the user {user}:\n{postinst}",
                deb.name
            );
        }
    }
    Ok(())
}

/// Runs `args` inside `root` (chroot), as root.
fn in_root(root: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    run(Command::new("chroot")
        .arg(root)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
}

#[test]
fn the_debs_install_into_a_clean_debian_and_init_works_as_the_service_user() -> anyhow::Result<()> {
    let Some(debs) = dir_from_env(DEBS_ENV, "the .debs scripts/test made") else {
        return Ok(());
    };
    let Some(clean) = dir_from_env(DEBIAN_ROOT_ENV, "a debootstrap --variant=minbase root") else {
        return Ok(());
    };
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("\n!!! SKIPPING: installing into a Debian root needs root (chroot)\n");
        assert!(
            std::env::var_os("CI").is_none_or(|v| v == "false" || v == "0" || v.is_empty()),
            "CI runs as root"
        );
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    let (ok, out) = run(Command::new("cp").arg("-a").arg(&clean).arg(&root))?;
    anyhow::ensure!(ok, "cannot copy the Debian root: {out}");
    let mut inside = Vec::new();
    for deb in DEBS {
        let file = deb_file(&debs, deb.name)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::copy(&file, root.join("tmp").join(&name))?;
        inside.push(format!("/tmp/{name}"));
    }
    let mut install = vec!["dpkg", "-i"];
    install.extend(inside.iter().map(String::as_str));
    let (ok, out) = in_root(&root, &install)?;
    assert!(ok, "dpkg -i failed:\n{out}");

    for deb in DEBS {
        for user in deb.users {
            let (ok, out) = in_root(&root, &["getent", "passwd", user])?;
            assert!(
                ok && out.contains("/usr/sbin/nologin"),
                "no system user {user}: {out}"
            );
        }
        for unit in deb.units {
            assert!(
                root.join("lib/systemd/system").join(unit).is_file(),
                "{unit} not installed"
            );
        }
        for b in deb.binaries {
            let (ok, out) = in_root(&root, &[format!("/usr/bin/{b}").as_str(), "--version"])?;
            assert!(ok && out.contains("0."), "{b} --version: {out}");
        }
    }
    let (ok, out) = in_root(
        &root,
        &[
            "stat",
            "-c",
            "%U %a",
            "/var/lib/slipway",
            "/etc/slipway/credentials",
        ],
    )?;
    assert!(
        ok && out.contains("slipway 750") && out.contains("root 700"),
        "{out}"
    );

    // The packaged config, as the service's user: what the README says to do.
    let (ok, out) = in_root(
        &root,
        &[
            "runuser",
            "-u",
            "slipway",
            "--",
            "apptracker",
            "init",
            "--config",
            "/etc/slipway/apptracker.toml",
        ],
    )?;
    assert!(ok, "apptracker init as slipway failed:\n{out}");
    let (ok, out) = in_root(
        &root,
        &[
            "stat",
            "-c",
            "%U %a",
            "/var/lib/slipway/apptracker/admin.token",
        ],
    )?;
    assert!(
        ok && out.trim() == "slipway 600",
        "the admin token file: {out}"
    );

    // Installed again (an upgrade's path through the scripts), then removed:
    // the conffiles and the data stay.
    let (ok, out) = in_root(&root, &install)?;
    assert!(ok, "dpkg -i again failed:\n{out}");
    let (ok, out) = in_root(
        &root,
        &[
            "dpkg",
            "-r",
            "slipway-control-plane",
            "slipway-host",
            "slipway-cli",
        ],
    )?;
    assert!(ok, "dpkg -r failed:\n{out}");
    assert!(!root.join("usr/bin/apptracker").exists());
    assert!(root.join("etc/slipway/apptracker.toml").is_file());
    assert!(
        root.join("var/lib/slipway/apptracker/admin.token")
            .is_file()
    );
    Ok(())
}
