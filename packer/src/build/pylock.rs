//! Where a Python project's dependencies come from, in this order of
//! evidence: `uv.lock`, `poetry.lock`, `pdm.lock`, `Pipfile.lock`,
//! `requirements.txt`, then `pyproject.toml`'s `[project] dependencies`
//! without a lock. Every source becomes one pinned requirements text (with
//! hashes, from a lockfile), which is what the install is cached by: a
//! change to the code, or to a lockfile that leaves the exported set as it
//! was, installs nothing.

use std::path::Path;

use super::interp::Pin;
use crate::BuildError;
use crate::input::read_input;

/// What decides a Python project's dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Uv,
    Poetry,
    Pdm,
    Pipfile,
    Requirements,
    Pyproject,
    Nothing,
}

impl Source {
    /// The file that selected it.
    pub(crate) fn file(self) -> &'static str {
        match self {
            Source::Uv => "uv.lock",
            Source::Poetry => "poetry.lock",
            Source::Pdm => "pdm.lock",
            Source::Pipfile => "Pipfile.lock",
            Source::Requirements => "requirements.txt",
            Source::Pyproject => "pyproject.toml",
            Source::Nothing => "nothing",
        }
    }

    /// How it is installed, for the log.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Source::Uv => "uv.lock: uv, frozen (uv export --locked, then uv pip install)",
            Source::Poetry => "poetry.lock: Poetry, frozen (poetry export, then pip)",
            Source::Pdm => "pdm.lock: its default group with its hashes, by pip",
            Source::Pipfile => "Pipfile.lock: its default packages, with their hashes, by pip",
            Source::Requirements => "requirements.txt: pip",
            Source::Pyproject => {
                "pyproject.toml [project] dependencies, no lockfile: pip resolves them anew, so builds of one commit may differ; commit a lockfile (uv lock, poetry lock)"
            }
            Source::Nothing => "no dependencies declared",
        }
    }
}

/// What `pyproject.toml` says that the build needs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Project {
    pub exists: bool,
    pub dependencies: Vec<String>,
    pub requires_python: Option<String>,
    /// It builds as a package: it has `[build-system]` (or a `setup.py`),
    /// and neither Poetry's `package-mode = false` nor uv's
    /// `package = false` says otherwise.
    pub is_package: bool,
    pub name: Option<String>,
}

impl Project {
    pub(crate) fn read(src: &Path) -> Result<Self, BuildError> {
        let has_setup_py = src.join("setup.py").is_file();
        let text = match read_input(src, "pyproject.toml") {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Project {
                    is_package: has_setup_py,
                    ..Project::default()
                });
            }
            Err(e) => return Err(BuildError::io("reading pyproject.toml", e)),
        };
        let doc: toml::Table = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            BuildError::BadEntry {
                path: "pyproject.toml".into(),
                reason: match line {
                    Some(l) => format!("invalid TOML at line {l}: {}", e.message()),
                    None => format!("invalid TOML: {}", e.message()),
                },
                log: String::new(),
            }
        })?;
        let project = doc.get("project").and_then(|p| p.as_table());
        let strings = |v: Option<&toml::Value>| -> Vec<String> {
            v.and_then(|d| d.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let tool = doc.get("tool");
        let flag = |path: &[&str]| -> Option<bool> {
            let mut v = tool?;
            for key in path {
                v = v.get(key)?;
            }
            v.as_bool()
        };
        let opted_out = flag(&["poetry", "package-mode"]) == Some(false)
            || flag(&["uv", "package"]) == Some(false);
        Ok(Project {
            exists: true,
            dependencies: strings(project.and_then(|p| p.get("dependencies"))),
            requires_python: project
                .and_then(|p| p.get("requires-python"))
                .and_then(|v| v.as_str())
                .map(String::from),
            is_package: (doc.contains_key("build-system") || has_setup_py) && !opted_out,
            name: project
                .and_then(|p| p.get("name"))
                .and_then(|v| v.as_str())
                .map(String::from),
        })
    }

    /// `requires-python`, as an interpreter range.
    pub(crate) fn python_range(&self) -> Option<Pin> {
        self.requires_python.as_ref().map(|spec| Pin {
            spec: spec.clone(),
            source: "pyproject.toml requires-python".into(),
        })
    }
}

/// The source of a project's dependencies, by the module's order.
pub(crate) fn detect(src: &Path, project: &Project) -> Source {
    for (file, source) in [
        ("uv.lock", Source::Uv),
        ("poetry.lock", Source::Poetry),
        ("pdm.lock", Source::Pdm),
        ("Pipfile.lock", Source::Pipfile),
        ("requirements.txt", Source::Requirements),
    ] {
        if src.join(file).is_file() {
            return source;
        }
    }
    if !project.dependencies.is_empty() {
        Source::Pyproject
    } else {
        Source::Nothing
    }
}

/// Whether a requirements text installs anything.
pub(crate) fn any_requirement(text: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| !l.is_empty())
}

/// Splits an exported requirements text into what comes from an index
/// (cached) and the project's own local paths (`-e ./lib`, `./lib`,
/// `file:…`: workspace members), installed with the project.
pub(crate) fn split_local(text: &str) -> (String, Vec<String>) {
    let mut remote = String::new();
    let mut local = Vec::new();
    // One requirement may span lines ending in `\` (its hashes).
    let mut logical: Vec<&str> = Vec::new();
    for line in text.lines() {
        logical.push(line);
        if line.trim_end().ends_with('\\') {
            continue;
        }
        let first = logical[0].trim();
        let bare = first.strip_prefix("-e ").unwrap_or(first).trim();
        if bare.starts_with("./")
            || bare.starts_with("../")
            || bare == "."
            || bare.starts_with("file:")
        {
            let path = bare.trim_end_matches('\\').split(';').next().unwrap_or("");
            local.push(path.trim().to_string());
        } else {
            for l in &logical {
                remote.push_str(l);
                remote.push('\n');
            }
        }
        logical.clear();
    }
    (remote, local)
}

/// The `default` group of a `pdm.lock`, as pinned requirements with their
/// markers and hashes (what `pdm export --prod` writes).
pub(crate) fn pdm_requirements(text: &str) -> Result<String, BuildError> {
    let bad = |reason: String| BuildError::BadEntry {
        path: "pdm.lock".into(),
        reason,
        log: String::new(),
    };
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| bad(format!("invalid TOML: {}", e.message())))?;
    let packages = doc
        .get("package")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = String::new();
    for package in &packages {
        let field = |k: &str| package.get(k).and_then(|v| v.as_str());
        let in_default = package
            .get("groups")
            .and_then(|g| g.as_array())
            .is_none_or(|g| g.iter().any(|x| x.as_str() == Some("default")));
        if !in_default {
            continue;
        }
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            if field("path").is_some() || field("editable").is_some() {
                continue;
            }
            return Err(bad(
                "a [[package]] without a name and a version (git or URL packages are not supported)"
                    .into(),
            ));
        };
        out.push_str(&format!("{name}=={version}"));
        if let Some(marker) = field("marker") {
            out.push_str(&format!(" ; {marker}"));
        }
        for file in package
            .get("files")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(hash) = file.get("hash").and_then(|h| h.as_str()) {
                out.push_str(&format!(" --hash={hash}"));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// The default packages of a `Pipfile.lock`, as pinned requirements with
/// their hashes.
pub(crate) fn pipfile_requirements(text: &str) -> Result<String, BuildError> {
    let bad = |reason: String| BuildError::BadEntry {
        path: "Pipfile.lock".into(),
        reason,
        log: String::new(),
    };
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("invalid JSON at line {}: {e}", e.line())))?;
    let Some(default) = doc.get("default").and_then(|d| d.as_object()) else {
        return Err(bad("it has no `default` section".into()));
    };
    let mut out = String::new();
    for (name, entry) in default {
        if entry.get("path").is_some() || entry.get("editable").is_some() {
            continue;
        }
        let Some(version) = entry.get("version").and_then(|v| v.as_str()) else {
            return Err(bad(format!(
                "package `{name}` has no pinned version (git or URL requirements are not supported)"
            )));
        };
        out.push_str(name);
        if let Some(extras) = entry.get("extras").and_then(|e| e.as_array()) {
            let extras: Vec<&str> = extras.iter().filter_map(|e| e.as_str()).collect();
            if !extras.is_empty() {
                out.push_str(&format!("[{}]", extras.join(",")));
            }
        }
        out.push_str(version);
        if let Some(markers) = entry.get("markers").and_then(|m| m.as_str()) {
            out.push_str(&format!(" ; {markers}"));
        }
        if let Some(hashes) = entry.get("hashes").and_then(|h| h.as_array()) {
            for h in hashes.iter().filter_map(|h| h.as_str()) {
                out.push_str(&format!(" --hash={h}"));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_evidence_selects_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project {
            dependencies: vec!["six".into()],
            ..Project::default()
        };
        assert_eq!(detect(dir.path(), &Project::default()), Source::Nothing);
        assert_eq!(detect(dir.path(), &p), Source::Pyproject);
        for (file, source) in [
            ("requirements.txt", Source::Requirements),
            ("Pipfile.lock", Source::Pipfile),
            ("pdm.lock", Source::Pdm),
            ("poetry.lock", Source::Poetry),
            ("uv.lock", Source::Uv),
        ] {
            std::fs::write(dir.path().join(file), "").unwrap();
            assert_eq!(detect(dir.path(), &p), source, "{file}");
        }
    }

    #[test]
    fn a_project_is_a_package_when_it_can_be_built_and_does_not_opt_out() {
        let dir = tempfile::tempdir().unwrap();
        let read = |text: &str| {
            std::fs::write(dir.path().join("pyproject.toml"), text).unwrap();
            Project::read(dir.path()).unwrap()
        };
        let p = read(
            "[project]\nname = \"a\"\nrequires-python = \">=3.10\"\ndependencies = [\"six\"]\n",
        );
        assert!(!p.is_package);
        assert_eq!(p.python_range().unwrap().spec, ">=3.10");
        assert!(read("[build-system]\nrequires = [\"hatchling\"]\n").is_package);
        assert!(!read("[build-system]\nrequires = [\"poetry-core\"]\n[tool.poetry]\npackage-mode = false\n").is_package);
        assert!(
            !read("[build-system]\nrequires = [\"uv_build\"]\n[tool.uv]\npackage = false\n")
                .is_package
        );
        let e = read_err(dir.path(), "[project\n");
        assert!(e.contains("pyproject.toml") && e.contains("line 1"), "{e}");
    }

    fn read_err(dir: &Path, text: &str) -> String {
        std::fs::write(dir.join("pyproject.toml"), text).unwrap();
        Project::read(dir).unwrap_err().to_string()
    }

    #[test]
    fn workspace_members_are_installed_with_the_project_not_cached() {
        let text = "idna==3.10 \\\n    --hash=sha256:aa\n-e ./libs/common\n./libs/other ; python_version >= \"3.10\"\nsix==1.16.0\n";
        let (remote, local) = split_local(text);
        assert_eq!(remote, "idna==3.10 \\\n    --hash=sha256:aa\nsix==1.16.0\n");
        assert_eq!(local, ["./libs/common", "./libs/other"]);
    }

    #[test]
    fn a_pdm_lock_gives_its_default_group_with_hashes() {
        let lock = "[metadata]\ngroups = [\"default\", \"dev\"]\n\n[[package]]\nname = \"six\"\nversion = \"1.16.0\"\ngroups = [\"default\"]\nmarker = \"python_version >= \\\"3.10\\\"\"\nfiles = [\n  {file = \"six.whl\", hash = \"sha256:aa\"},\n]\n\n[[package]]\nname = \"pytest\"\nversion = \"8.0.0\"\ngroups = [\"dev\"]\n";
        assert_eq!(
            pdm_requirements(lock).unwrap(),
            "six==1.16.0 ; python_version >= \"3.10\" --hash=sha256:aa\n"
        );
        assert!(pdm_requirements("[[package]]\ngroups = [\"default\"]\n").is_err());
    }

    #[test]
    fn a_pipfile_lock_becomes_hashed_requirements() {
        let lock = r#"{"_meta": {}, "default": {
            "six": {"hashes": ["sha256:aa", "sha256:bb"], "index": "pypi", "version": "==1.16.0"},
            "requests": {"extras": ["socks"], "markers": "python_version >= '3.8'", "version": "==2.32.3"},
            "mine": {"editable": true, "path": "."}
        }, "develop": {"pytest": {"version": "==8.0.0"}}}"#;
        let text = pipfile_requirements(lock).unwrap();
        assert_eq!(
            text,
            "requests[socks]==2.32.3 ; python_version >= '3.8'\nsix==1.16.0 --hash=sha256:aa --hash=sha256:bb\n"
        );
        let e = pipfile_requirements("{\"default\": {\"x\": {}}}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Pipfile.lock") && e.contains("`x`"), "{e}");
    }
}
