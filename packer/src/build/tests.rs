//! Tests of the build steps' helpers.

use std::path::Path;

use super::python::{quote, relocate_scripts};
use super::step::culprit_line;

#[test]
fn culprits_are_found_in_package_manager_output() {
    let pip = "Collecting flask\nERROR: Could not find a version that satisfies the requirement nope-xyz (from versions: none)\nERROR: No matching distribution found for nope-xyz\n";
    assert_eq!(
        culprit_line(pip).as_deref(),
        Some("ERROR: No matching distribution found for nope-xyz")
    );
    let npm = "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/nope-xyz - Not found\nnpm error 404  'nope-xyz@^1.0.0' is not in this registry.\n";
    assert_eq!(
        culprit_line(npm).as_deref(),
        Some("npm error 404  'nope-xyz@^1.0.0' is not in this registry.")
    );
    assert_eq!(culprit_line("all fine\n"), None);
}

#[test]
fn shebangs_naming_the_build_python_are_made_portable() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path();
    std::fs::write(
        bin.join("gunicorn"),
        "#!/root/.pyenv/versions/3.11.7/bin/python3.11\n# -*- coding: utf-8 -*-\nimport sys\n",
    )
    .unwrap();
    std::fs::write(bin.join("tool.sh"), "#!/bin/sh\necho hi\n").unwrap();
    relocate_scripts(bin).unwrap();
    assert_eq!(
        std::fs::read_to_string(bin.join("gunicorn")).unwrap(),
        "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\nimport sys\n"
    );
    assert_eq!(
        std::fs::read_to_string(bin.join("tool.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
}

#[test]
fn paths_are_quoted_for_the_shell() {
    assert_eq!(quote(Path::new("/tmp/a b")), "'/tmp/a b'");
    assert_eq!(quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
}
