//! Artifact throughput: packing a real dependency tree with packer's code
//! (tar + flate2/zlib-rs, per gzip level) and unpacking it with the
//! grabber's checked extraction, against GNU `tar czf`/`tar xzf` and
//! `tar` with `pigz`, on the same tree in the same run.
//!
//!   artifact --tree DIR [--levels 1,3,6,9] [--runs 3] [--out FILE]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use deploy::{AppName, BuildType, HealthSpec, Manifest, RunSpec, Timestamp, Version};
use serde_json::json;
use slipway_bench::results::Results;

#[derive(Debug, Parser)]
#[command(about = "Pack and unpack throughput against GNU tar and pigz")]
struct Args {
    /// The dependency tree to pack (`scripts/bench` installs it).
    #[arg(long)]
    tree: PathBuf,
    /// gzip levels for packer's code.
    #[arg(long, value_delimiter = ',', default_value = "1,3,6,9")]
    levels: Vec<u32>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Scratch space for archives and unpacked trees.
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Append results (JSON lines) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    slipway_bench::init_tracing();
    let args = Args::parse();
    let results = Results::new(args.out.clone());
    let (files, bytes) = slipway_bench::tree::size(&args.tree)?;
    eprintln!(
        "artifact: {} ({files} files, {:.1} MB)",
        args.tree.display(),
        mb(bytes)
    );
    let scratch = tempfile::Builder::new()
        .prefix("slipway-bench-artifact-")
        .tempdir_in(&args.work_dir)?;
    let dir = scratch.path();
    let has_pigz = Command::new("pigz").arg("--version").output().is_ok();
    if !has_pigz {
        eprintln!("artifact: pigz is not installed; its rows are left out");
    }
    // Warm the page cache, so every tool reads the tree from memory.
    slipway_bench::tree::size(&args.tree)?;
    tar_pack(&args.tree, &dir.join("warm.tar.gz"), None)?;

    for run in 1..=args.runs {
        let mut cases: Vec<(String, Option<u32>, Tool)> = Vec::new();
        for &l in &args.levels {
            cases.push((format!("slipway-{l}"), Some(l), Tool::Slipway));
        }
        cases.push(("tar-gzip-6".into(), Some(6), Tool::GnuTar));
        if has_pigz {
            cases.push(("tar-pigz-6".into(), Some(6), Tool::Pigz));
        }
        for (name, level, tool) in cases {
            let archive = dir.join(format!("{name}.tar.gz"));
            let _ = std::fs::remove_file(&archive);
            let pack = timed(|| match tool {
                Tool::Slipway => slipway_pack(&args.tree, &archive, level.unwrap_or(6)),
                Tool::GnuTar => tar_pack(&args.tree, &archive, None),
                Tool::Pigz => tar_pack(&args.tree, &archive, Some("pigz")),
            })?;
            let size = std::fs::metadata(&archive)?.len();
            let dest = dir.join(format!("{name}.out"));
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::create_dir_all(&dest)?;
            let unpack = timed(|| match tool {
                Tool::Slipway => grabber::extract::unpack_checked(&archive, &dest, u64::MAX)
                    .map(|_| ())
                    .map_err(anyhow::Error::from),
                Tool::GnuTar => tar_unpack(&archive, &dest, None),
                Tool::Pigz => tar_unpack(&archive, &dest, Some("pigz")),
            })?;
            let (out_files, _) = slipway_bench::tree::size(&dest)?;
            if out_files < files {
                bail!("{name}: unpacked {out_files} files of {files}");
            }
            std::fs::remove_dir_all(&dest)?;
            eprintln!(
                "artifact: run {run} {name:<12} pack {:6.1} MB/s  unpack {:6.1} MB/s  {:.1} MB ({:.2}x)",
                mb(bytes) / pack.as_secs_f64(),
                mb(bytes) / unpack.as_secs_f64(),
                mb(size),
                bytes as f64 / size as f64
            );
            results.record(&json!({
                "bench": "artifact",
                "tool": name,
                "level": level,
                "run": run,
                "tree_files": files,
                "tree_bytes": bytes,
                "archive_bytes": size,
                "pack_s": pack.as_secs_f64(),
                "unpack_s": unpack.as_secs_f64(),
                "pack_mb_s": mb(bytes) / pack.as_secs_f64(),
                "unpack_mb_s": mb(bytes) / unpack.as_secs_f64(),
            }))?;
            std::fs::remove_file(&archive)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Tool {
    Slipway,
    GnuTar,
    Pigz,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

fn slipway_pack(tree: &Path, out: &Path, level: u32) -> anyhow::Result<()> {
    let manifest = Manifest {
        app: AppName::parse("bench")?,
        version: Version::parse("1-0000000")?,
        commit: "0".repeat(40),
        build_type: BuildType::Generic,
        built_at: Timestamp::now(),
        run: RunSpec {
            command: "true".into(),
            port: None,
            env: Default::default(),
            stop_timeout_ms: 1000,
            paths: Default::default(),
            shared: Vec::new(),
            user: None,
        },
        health: HealthSpec::default(),
        processes: Default::default(),
        runtime: None,
        files: 0,
        content_bytes: 0,
        release: None,
        hooks: Default::default(),
    };
    packer::pack_dir_at_level(tree, &manifest, out, level)?;
    Ok(())
}

fn tar_pack(tree: &Path, out: &Path, program: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = Command::new("tar");
    match program {
        Some(p) => cmd.arg("-I").arg(p).arg("-cf"),
        None => cmd.arg("-czf"),
    };
    run(cmd.arg(out).arg("-C").arg(tree).arg("."))
}

fn tar_unpack(archive: &Path, dest: &Path, program: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = Command::new("tar");
    match program {
        Some(p) => cmd.arg("-I").arg(p).arg("-xf"),
        None => cmd.arg("-xzf"),
    };
    run(cmd.arg(archive).arg("-C").arg(dest))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
