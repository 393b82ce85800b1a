//! Tidy: the shape of the code, checked on every test run (rust-analyzer's
//! `xtask/src/tidy.rs`). It reads the workspace's sources and manifests, not
//! the build, so it runs in a few milliseconds and links none of the
//! platform; it is a test binary of its own for that reason.
//!
//! What it checks, each rule written in ARCHITECTURE.md ("Boundaries"):
//! - crate boundaries: which workspace crate may depend on which
//!   ([`CRATE_RULES`]);
//! - AppTracker's layers: storage knows nothing of orchestration or HTTP,
//!   orchestration knows nothing of HTTP ([`LAYERS`]), and neither names an
//!   HTTP crate such as axum ([`HTTP_CRATES`]);
//! - no module cycles between the top-level modules of any crate;
//! - no non-test source file over [`MAX_LINES`] lines;
//! - every source file opens with a `//!` saying what it holds.
//!
//! Each checker is a function over plain data, tested at the bottom with a
//! violation made up for the purpose, so a checker that stopped finding
//! anything would fail its own test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which workspace crates each crate may depend on (normal and build
/// dependencies; dev-dependencies are free). A crate missing from this
/// table is an error: adding a crate means deciding its place.
const CRATE_RULES: &[(&str, &[&str])] = &[
    // The shared language: newtypes, wire types, the API client, bootstrap.
    ("deploy", &[]),
    // The `deploy` CLI.
    ("deploy-cli", &["deploy"]),
    // Agents and the website know the others only through `deploy`.
    ("packer", &["deploy"]),
    ("grabber", &["deploy"]),
    ("versionchecker", &["deploy"]),
    ("web", &["deploy"]),
    // The control plane mounts the website and runs packer's builder in
    // process; it never links a host agent.
    ("apptracker", &["deploy", "packer", "web"]),
    // The composition of the whole platform (dev mode, tests, benchmarks).
    (
        "slipway-platform",
        &[
            "deploy",
            "apptracker",
            "packer",
            "grabber",
            "versionchecker",
            "web",
        ],
    ),
    (
        "slipway-tests",
        &[
            "deploy",
            "deploy-cli",
            "apptracker",
            "packer",
            "grabber",
            "versionchecker",
            "web",
            "slipway-platform",
        ],
    ),
    (
        "slipway-bench",
        &[
            "deploy",
            "apptracker",
            "packer",
            "grabber",
            "versionchecker",
            "web",
            "slipway-platform",
            "slipway-tests",
        ],
    ),
];

/// AppTracker's layers, lowest first: a module of a layer may use its own
/// layer and the layers below it, never one above. Modules not named here
/// (model, config, drift's pure computation, bus, store, secrets, tls) are
/// shared ground every layer may use, and may use no layer's module.
const LAYERS: &[(&str, &[&str])] = &[
    ("storage", &["db"]),
    ("orchestration", &["tracker", "queue", "webhooks"]),
    ("http", &["http"]),
];

/// Modules of AppTracker above all layers: they assemble the layers.
const ASSEMBLY: &[&str] = &["startup", "cli", "lib", "main", "builder", "init"];

/// The longest a non-test source file may be.
const MAX_LINES: usize = 700;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}

/// A workspace member: its package name and directory.
struct Member {
    name: String,
    dir: PathBuf,
    manifest: toml::Table,
}

fn members() -> Vec<Member> {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let manifest: toml::Table = text.parse().expect("root Cargo.toml parses");
    let list = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members is a list");
    list.iter()
        .map(|m| {
            let dir = root.join(m.as_str().expect("member is a path"));
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("member manifest");
            let manifest: toml::Table = text.parse().expect("member manifest parses");
            let name = manifest["package"]["name"]
                .as_str()
                .expect("package.name")
                .to_string();
            Member {
                name,
                dir,
                manifest,
            }
        })
        .collect()
}

/// The workspace crates a manifest depends on, outside dev-dependencies.
fn workspace_deps(manifest: &toml::Table, workspace: &BTreeSet<String>) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    for table in ["dependencies", "build-dependencies"] {
        if let Some(t) = manifest.get(table).and_then(|t| t.as_table()) {
            for (key, value) in t {
                // `foo = { package = "bar" }` depends on bar.
                let name = value.get("package").and_then(|p| p.as_str()).unwrap_or(key);
                if workspace.contains(name) {
                    deps.insert(name.to_string());
                }
            }
        }
    }
    deps
}

/// Breaches of [`CRATE_RULES`]: one line per forbidden edge or unplaced
/// crate.
fn check_crate_rules(
    graph: &BTreeMap<String, BTreeSet<String>>,
    rules: &[(&str, &[&str])],
) -> Vec<String> {
    let rules: BTreeMap<&str, &[&str]> = rules.iter().copied().collect();
    let mut errors = Vec::new();
    for (krate, deps) in graph {
        let Some(allowed) = rules.get(krate.as_str()) else {
            errors.push(format!(
                "crate `{krate}` has no place in the crate rules (tests/tests/tidy.rs CRATE_RULES and ARCHITECTURE.md \"Boundaries\")"
            ));
            continue;
        };
        for dep in deps {
            if !allowed.contains(&dep.as_str()) {
                errors.push(format!(
                    "crate `{krate}` depends on `{dep}`, which the crate rules forbid (allowed: {allowed:?})"
                ));
            }
        }
    }
    errors
}

/// A source file of a crate, with its module path inside the crate
/// (`["tracker", "rollout"]` for `src/tracker/rollout.rs`; empty for the
/// crate root).
struct Source {
    module: Vec<String>,
    text: String,
}

/// Whether a file holds only tests: a module's `tests.rs`, or anything in
/// a crate's `tests/` or `benches/` directory (`relative` is the path inside
/// the crate).
fn is_test_file(relative: &Path) -> bool {
    relative.file_name().is_some_and(|f| f == "tests.rs")
        || relative
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of `src/a/b.rs` (`a::b`), `src/a/mod.rs` (`a`), and
/// `src/lib.rs` / `src/main.rs` / `src/bin/x.rs` (the root).
fn module_path(src_relative: &Path) -> Vec<String> {
    let parts: Vec<String> = src_relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [one] if one == "lib" || one == "main" => Vec::new(),
        [first, ..] if first == "bin" => Vec::new(),
        [rest @ .., last] if last == "mod" => rest.to_vec(),
        all => all.to_vec(),
    }
}

/// The text of a file without comments and without a trailing
/// `#[cfg(test)] mod tests { … }` block: what the build sees outside tests.
fn code_outside_tests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests {"))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment: cut at ` //` (strings with ` //` inside are rare
        // and at worst hide a path from the checker).
        let code = match line.find(" //") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules of the crate a file's code names: `crate::x`,
/// `crate::{x, y::z}`, and `super::…::x` where the supers climb to the crate
/// root.
fn referenced_modules(code: &str, module: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let preceded_by_ident = i > 0 && {
            let b = bytes[i - 1];
            b.is_ascii_alphanumeric() || b == b'_' || b == b':'
        };
        if !preceded_by_ident && rest.starts_with("crate::") {
            collect_after(&rest["crate::".len()..], &ident, &mut found);
            i += "crate::".len();
            continue;
        }
        if !preceded_by_ident && rest.starts_with("super::") {
            let mut depth = 0;
            let mut r = rest;
            while let Some(after) = r.strip_prefix("super::") {
                depth += 1;
                r = after;
            }
            // From `src/a/b.rs` (module a::b), `super::` is `a` and
            // `super::super::` the crate root.
            if depth == module.len() {
                collect_after(r, &ident, &mut found);
            }
            i += rest.len() - r.len();
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

/// The first path segment after `crate::`, or each item's first segment in
/// a `{…}` group.
fn collect_after(rest: &str, ident: &dyn Fn(&str) -> String, found: &mut BTreeSet<String>) {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0usize;
        let mut start = 0usize;
        for (j, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    add_item(&group[start..j], ident, found);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    add_item(&group[start..j], ident, found);
                    start = j + 1;
                }
                _ => {}
            }
        }
    } else {
        add_item(rest, ident, found);
    }
}

fn add_item(item: &str, ident: &dyn Fn(&str) -> String, found: &mut BTreeSet<String>) {
    let name = ident(item.trim_start());
    // `crate::Foo` names an item of the root, not a module.
    if !name.is_empty() && name != "self" && name.starts_with(|c: char| c.is_lowercase()) {
        found.insert(name);
    }
}

/// The graph of a crate's top-level modules: who names whom, from code
/// outside tests.
fn module_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let Some(top) = source.module.first() else {
            continue;
        };
        let refs = referenced_modules(&code_outside_tests(&source.text), &source.module);
        let entry = graph.entry(top.clone()).or_default();
        for r in refs {
            if &r != top {
                entry.insert(r);
            }
        }
    }
    graph
}

/// The cycles of a graph: each strongly connected component with more than
/// one module, as a sorted list (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges {
                let w = w.as_str();
                if !s.graph.contains_key(w) {
                    continue;
                }
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}

/// Breaches of AppTracker's layering: one line per forbidden reference.
fn check_layers(
    graph: &BTreeMap<String, BTreeSet<String>>,
    layers: &[(&str, &[&str])],
    assembly: &[&str],
) -> Vec<String> {
    let layer_of = |module: &str| -> Option<usize> {
        layers.iter().position(|(_, mods)| mods.contains(&module))
    };
    let mut errors = Vec::new();
    for (module, refs) in graph {
        if assembly.contains(&module.as_str()) {
            continue;
        }
        // Shared ground (no layer) is below every layer: it may use none.
        let own = layer_of(module);
        for r in refs {
            if let Some(theirs) = layer_of(r)
                && own.is_none_or(|own| theirs > own)
            {
                let own_name = own.map_or("shared ground", |l| layers[l].0);
                errors.push(format!(
                    "apptracker module `{module}` ({own_name}) uses `{r}` ({}), a layer above it",
                    layers[theirs].0
                ));
            }
        }
    }
    errors
}

/// The HTTP crates storage and orchestration may not name: their types
/// belong to the HTTP layer.
const HTTP_CRATES: &[&str] = &["axum", "tower_http", "hyper", "http"];

/// The HTTP crates a file's code names as paths (`axum::Json`,
/// `use http::StatusCode`); `crate::http::…` is a module, not the crate.
fn http_crates_named(code: &str) -> BTreeSet<String> {
    let bytes = code.as_bytes();
    let mut found = BTreeSet::new();
    for name in HTTP_CRATES {
        let needle = format!("{name}::");
        let mut from = 0;
        while let Some(i) = code[from..].find(&needle) {
            let at = from + i;
            let free = at == 0 || {
                let b = bytes[at - 1];
                !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            };
            if free {
                found.insert(name.to_string());
            }
            from = at + needle.len();
        }
    }
    found
}

/// Breaches of "storage and orchestration know no HTTP types": one line per
/// file of those layers naming an HTTP crate.
fn check_no_http_types(sources: &[Source], layers: &[(&str, &[&str])]) -> Vec<String> {
    let below_http: Vec<&str> = layers
        .iter()
        .filter(|(name, _)| *name != "http")
        .flat_map(|(_, mods)| mods.iter().copied())
        .collect();
    let mut errors = Vec::new();
    for source in sources {
        let Some(top) = source.module.first() else {
            continue;
        };
        if !below_http.contains(&top.as_str()) {
            continue;
        }
        for krate in http_crates_named(&code_outside_tests(&source.text)) {
            errors.push(format!(
                "apptracker module `{}` names the HTTP crate `{krate}`: HTTP types belong to `http`",
                source.module.join("::")
            ));
        }
    }
    errors
}

/// Every crate's sources, by crate name.
fn crate_sources(member: &Member) -> Vec<Source> {
    let src = member.dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).expect("under src").to_path_buf();
            let text = std::fs::read_to_string(&path).expect("source file reads");
            Source {
                module: module_path(&relative),
                text,
            }
        })
        .collect()
}

/// A source file: where it is in the workspace and inside its crate.
struct File {
    in_workspace: PathBuf,
    in_crate: PathBuf,
}

/// Source files over the limit, outside tests, with their line counts.
fn check_sizes(files: &[(File, usize)]) -> Vec<String> {
    files
        .iter()
        .filter(|(file, lines)| *lines > MAX_LINES && !is_test_file(&file.in_crate))
        .map(|(file, lines)| {
            format!(
                "{} has {lines} lines (the limit is {MAX_LINES}; split it by what it holds, or move its tests to a sibling tests.rs)",
                file.in_workspace.display()
            )
        })
        .collect()
}

fn all_rust_files() -> Vec<(PathBuf, File)> {
    let root = workspace_root();
    let mut out = Vec::new();
    for member in members() {
        let mut files = Vec::new();
        rust_files(&member.dir, &mut files);
        for path in files {
            let (Ok(in_workspace), Ok(in_crate)) =
                (path.strip_prefix(&root), path.strip_prefix(&member.dir))
            else {
                continue;
            };
            let file = File {
                in_workspace: in_workspace.to_path_buf(),
                in_crate: in_crate.to_path_buf(),
            };
            out.push((path.clone(), file));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn fail_on(what: &str, errors: Vec<String>) {
    assert!(errors.is_empty(), "{what}:\n  {}", errors.join("\n  "));
}

#[test]
fn crates_depend_only_as_the_rules_allow() {
    let members = members();
    let names: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    let graph: BTreeMap<String, BTreeSet<String>> = members
        .iter()
        .map(|m| (m.name.clone(), workspace_deps(&m.manifest, &names)))
        .collect();
    fail_on("crate boundaries", check_crate_rules(&graph, CRATE_RULES));
}

#[test]
fn apptracker_layers_point_down() {
    let member = members()
        .into_iter()
        .find(|m| m.name == "apptracker")
        .expect("apptracker is a member");
    let graph = module_graph(&crate_sources(&member));
    for (_, modules) in LAYERS {
        for m in *modules {
            assert!(
                graph.contains_key(*m),
                "the layer rules name apptracker module `{m}`, which does not exist: update LAYERS"
            );
        }
    }
    fail_on("apptracker layers", check_layers(&graph, LAYERS, ASSEMBLY));
}

#[test]
fn storage_and_orchestration_name_no_http_types() {
    let member = members()
        .into_iter()
        .find(|m| m.name == "apptracker")
        .expect("apptracker is a member");
    fail_on(
        "HTTP types below the HTTP layer",
        check_no_http_types(&crate_sources(&member), LAYERS),
    );
}

#[test]
fn no_module_cycles_in_any_crate() {
    let mut errors = Vec::new();
    for member in members() {
        let graph = module_graph(&crate_sources(&member));
        for cycle in cycles(&graph) {
            errors.push(format!("{}: {}", member.name, cycle.join(" <-> ")));
        }
    }
    fail_on(
        "module cycles (top-level modules that use each other)",
        errors,
    );
}

#[test]
fn no_source_file_is_too_long() {
    let files: Vec<(File, usize)> = all_rust_files()
        .into_iter()
        .map(|(path, file)| {
            let n = std::fs::read_to_string(&path).map_or(0, |t| t.lines().count());
            (file, n)
        })
        .collect();
    assert!(files.len() > 50, "tidy found only {} files", files.len());
    fail_on("files too long", check_sizes(&files));
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let errors: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|(path, _)| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|(_, file)| {
            format!(
                "{} does not open with a `//!` saying what it holds",
                file.in_workspace.display()
            )
        })
        .collect();
    fail_on("module docs", errors);
}

// The checkers find what they are made to find.

fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    edges
        .iter()
        .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

#[test]
fn tidy_finds_a_forbidden_crate_edge_and_an_unplaced_crate() {
    let g = graph(&[
        ("apptracker", &["deploy", "grabber"]),
        ("deploy", &[]),
        ("newcrate", &["deploy"]),
    ]);
    let errors = check_crate_rules(&g, CRATE_RULES);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("`apptracker` depends on `grabber`"),
        "{errors:?}"
    );
    assert!(errors[1].contains("`newcrate` has no place"), "{errors:?}");
}

#[test]
fn tidy_finds_cycles_through_grouped_imports_and_supers() {
    let sources = vec![
        Source {
            module: vec!["a".into()],
            text: "//! a\nuse crate::{b::Thing, c};\n".into(),
        },
        Source {
            module: vec!["b".into(), "inner".into()],
            text: "//! b\nfn f() { super::super::a::g() }\n".into(),
        },
        Source {
            module: vec!["c".into()],
            text: "//! c\n// use crate::a; only a comment\nuse crate::Root;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n".into(),
        },
    ];
    let g = module_graph(&sources);
    assert_eq!(g["a"], ["b", "c"].iter().map(|s| s.to_string()).collect());
    assert_eq!(g["b"], ["a"].iter().map(|s| s.to_string()).collect());
    assert!(
        g["c"].is_empty(),
        "comments, root items and tests are not edges: {g:?}"
    );
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn tidy_finds_a_layer_pointing_up() {
    let g = graph(&[
        ("db", &["tracker", "config"]),
        ("tracker", &["db", "http"]),
        ("http", &["tracker", "db"]),
        ("config", &["http"]),
        ("bus", &["db"]),
        ("startup", &["http", "db"]),
    ]);
    let errors = check_layers(&g, LAYERS, ASSEMBLY);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`bus` (shared ground) uses `db`"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`config` (shared ground) uses `http`"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`db` (storage) uses `tracker`"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`tracker` (orchestration) uses `http`"))
    );
}

#[test]
fn tidy_finds_a_long_file_but_not_a_long_test_file() {
    let file = |krate: &str, inside: &str| File {
        in_workspace: Path::new(krate).join(inside),
        in_crate: PathBuf::from(inside),
    };
    let files = vec![
        (file("apptracker", "src/big.rs"), 701),
        (file("apptracker", "src/ok.rs"), 700),
        (file("apptracker", "src/db/tests.rs"), 2000),
        (file("tests", "tests/e2e/rollout.rs"), 2000),
        (file("tests", "src/lib.rs"), 900),
    ];
    let errors = check_sizes(&files);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("apptracker/src/big.rs has 701 lines"));
    assert!(errors[1].starts_with("tests/src/lib.rs has 900 lines"));
}

#[test]
fn module_paths_follow_the_file_layout() {
    assert!(module_path(Path::new("lib.rs")).is_empty());
    assert!(module_path(Path::new("bin/tool.rs")).is_empty());
    assert_eq!(module_path(Path::new("db/mod.rs")), vec!["db"]);
    assert_eq!(
        module_path(Path::new("http/routes/apps.rs")),
        vec!["http", "routes", "apps"]
    );
}

#[test]
fn tidy_finds_http_types_below_the_http_layer() {
    let source = |module: &[&str], text: &str| Source {
        module: module.iter().map(|m| m.to_string()).collect(),
        text: text.to_string(),
    };
    let sources = vec![
        source(
            &["tracker", "create"],
            "//! t\nuse axum::http::StatusCode;\n",
        ),
        source(&["db"], "//! d\nfn f() -> http::StatusCode { todo!() }\n"),
        source(
            &["queue"],
            "//! q\nuse crate::http::ApiError;\n// axum::Json in a comment\n",
        ),
        source(&["http", "routes"], "//! h\nuse axum::Json;\n"),
        source(
            &["webhooks"],
            "//! w\n#[cfg(test)]\nmod tests {\n    use axum::Json;\n}\n",
        ),
    ];
    let errors = check_no_http_types(&sources, LAYERS);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("`tracker::create` names the HTTP crate `axum`"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("`db` names the HTTP crate `http`"),
        "{errors:?}"
    );
}
