//! `slipway.toml`, as packer reads it (`packer::SlipwayToml::parse`): any
//! text is refused with a message or accepted, never a panic; and what is
//! accepted makes a release manifest that the grabber reads back the same
//! (packer writes it as JSON into every artifact).
#![no_main]

use deploy::{AppName, BuildType, Manifest, Timestamp, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match packer::SlipwayToml::parse(text) {
        Ok(config) => config,
        Err(e) => {
            // The message names the key and the line: it must render.
            let _ = e.to_string();
            if let Some(line) = e.line() {
                assert!(line >= 1 && line <= text.lines().count() + 1, "line {line} of {e}");
            }
            return;
        }
    };
    // As packer's build makes the manifest (packer/src/build.rs).
    let manifest = Manifest {
        app: AppName::parse("fuzz").expect("app name"),
        version: Version::parse("1-abcdef0").expect("version"),
        commit: "0".repeat(40),
        build_type: config.build_type.unwrap_or(BuildType::Generic),
        built_at: Timestamp(0),
        run: config.run,
        health: config.health,
        processes: config.processes,
        runtime: None,
        files: 0,
        content_bytes: 0,
        release: config.release,
        hooks: config.hooks,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    let back: Manifest = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("the grabber cannot read the manifest packer wrote: {e}"));
    assert_eq!(back, manifest, "the manifest changed on its way to the grabber");
});
