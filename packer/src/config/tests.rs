//! Tests of reading packer's build configuration.

use super::*;

fn err(text: &str) -> ConfigError {
    SlipwayToml::parse(text).expect_err("the file should be refused")
}

#[test]
fn include_lists_paths_inside_the_repository() {
    let c = SlipwayToml::parse(
            "type = \"generic\"\n[build]\ncommand = \"make\"\ninclude = [\"dist\", \"bin/start\"]\n[run]\ncommand = \"bin/start\"\n",
        )
        .unwrap();
    assert_eq!(
        c.build_include,
        Some(vec![PathBuf::from("dist"), PathBuf::from("bin/start")])
    );
    for bad in ["../etc", "/etc", "dist/../../x", ""] {
        let e = err(&format!(
            "type = \"generic\"\n[build]\ncommand = \"make\"\ninclude = [\"dist\", {bad:?}]\n[run]\ncommand = \"x\"\n"
        ));
        assert_eq!(e.key(), Some("build.include"), "{bad}: {e}");
        assert_eq!(e.line(), Some(4), "{bad}: {e}");
    }
}

#[test]
fn watch_lists_repository_relative_patterns() {
    let c = SlipwayToml::parse(
        "[build]\nwatch = [\"libs/shared/\", \"proto/*.proto\", \"libs/shared\"]\n[run]\ncommand = \"x\"\n",
    )
    .unwrap();
    assert_eq!(
        c.build_watch,
        ["libs/shared", "proto/*.proto"],
        "normalised, each once"
    );
    let none = SlipwayToml::parse("[run]\ncommand = \"x\"\n").unwrap();
    assert!(none.build_watch.is_empty());
    for bad in ["../libs", "/libs", "libs//x", "", "libs/../x"] {
        let e = err(&format!(
            "[run]\ncommand = \"x\"\n[build]\nwatch = [\"ok\",\n  {bad:?}]\n"
        ));
        assert_eq!(e.key(), Some("build.watch"), "{bad}: {e}");
        assert_eq!(e.line(), Some(5), "{bad}: {e}");
        assert!(e.to_string().contains("repository's top"), "{e}");
    }
    let e = err("[build]\nwatch = \"libs\"\n[run]\ncommand = \"x\"\n");
    assert_eq!(e.key(), Some("build.watch"), "a list, not a string: {e}");
}

#[test]
fn full_file() {
    let c = SlipwayToml::parse(
        r#"
name = "hello"
type = "python"

[build]
command = "make dist"

[run]
command = "python3 app.py"
port = 8000
env = { GREETING = "hi" }
stop_timeout = "5s"

[health]
http = "/health"
expect = "ok"
timeout = "1m"
grace = "500ms"
interval = "1s"
bake = "5s"
"#,
    )
    .unwrap();
    assert_eq!(c.name.unwrap().as_str(), "hello");
    assert_eq!(c.build_type, Some(BuildType::Python));
    assert_eq!(c.build_command.as_deref(), Some("make dist"));
    assert_eq!(c.run.command, "python3 app.py");
    assert_eq!(c.run.port, Some(8000));
    assert_eq!(c.run.env.get("GREETING").map(String::as_str), Some("hi"));
    assert_eq!(c.run.stop_timeout_ms, 5_000);
    assert_eq!(
        c.health,
        HealthSpec {
            check: HealthCheck::Http {
                path: "/health".into(),
                expect: Some("ok".into()),
            },
            timeout_ms: 60_000,
            grace_ms: 500,
            interval_ms: 1_000,
            bake_ms: 5_000,
        }
    );
}

#[test]
fn expect_needs_an_http_check_and_the_interval_a_length() {
    let e = err("[run]\ncommand = \"x\"\n[health]\nexpect = \"ok\"\n");
    assert_eq!((e.key(), e.line()), (Some("health.expect"), Some(4)), "{e}");
    assert!(e.to_string().contains("no `http` check"), "{e}");
    let e = err("[run]\ncommand = \"x\"\n[health]\ninterval = \"0s\"\n");
    assert_eq!(
        (e.key(), e.line()),
        (Some("health.interval"), Some(4)),
        "{e}"
    );
}

#[test]
fn defaults() {
    let c = SlipwayToml::parse("[run]\ncommand = \"./server\"\n").unwrap();
    assert_eq!(c.name, None);
    assert_eq!(c.build_type, None);
    assert_eq!(c.build_command, None);
    assert_eq!(c.run.port, None);
    assert!(c.run.env.is_empty());
    assert_eq!(c.run.stop_timeout_ms, 10_000);
    assert_eq!(c.health.check, HealthCheck::Running);
    assert_eq!(c.health.timeout_ms, 30_000);
    assert_eq!(c.health.grace_ms, 2_000);
    assert_eq!(c.health.bake_ms, 2_000);
}

#[test]
fn bake_is_a_duration_and_zero_turns_it_off() {
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n[health]\nbake = \"1m 30s\"\n").unwrap();
    assert_eq!(c.health.bake_ms, 90_000);
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n[health]\nbake = \"0s\"\n").unwrap();
    assert_eq!(c.health.bake_ms, 0);
    let e = err("[run]\ncommand = \"x\"\n[health]\nbake = \"a while\"\n");
    assert_eq!((e.key(), e.line()), (Some("health.bake"), Some(4)), "{e}");
    assert!(
        e.to_string().contains("invalid duration \"a while\""),
        "{e}"
    );
    let e = err("[run]\ncommand = \"x\"\n[health]\nbake = 2\n");
    assert_eq!((e.key(), e.line()), (Some("health.bake"), Some(4)), "{e}");
}

#[test]
fn tcp_and_command_checks() {
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\nport = 1\n[health]\ntcp = true\n").unwrap();
    assert_eq!(c.health.check, HealthCheck::Tcp);
    let c =
        SlipwayToml::parse("[run]\ncommand = \"x\"\n[health]\ncommand = \"curl -f x\"\n").unwrap();
    assert_eq!(
        c.health.check,
        HealthCheck::Command {
            command: "curl -f x".into()
        }
    );
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n[health]\ntcp = false\n").unwrap();
    assert_eq!(c.health.check, HealthCheck::Running);
}

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let e = err("name = \"a\"\n\n[run]\ncommand = \"x\"\n[health]\ncolour = \"red\"\n");
    let s = e.to_string();
    assert_eq!(e.key(), Some("health.colour"), "{s}");
    assert_eq!(e.line(), Some(6), "{s}");
    assert!(
        s.starts_with("slipway.toml: unknown key `health.colour` at line 6"),
        "{s}"
    );

    let e = err("colour = \"red\"\n[run]\ncommand = \"x\"\n");
    let s = e.to_string();
    assert_eq!(e.key(), Some("colour"), "{s}");
    assert_eq!(e.line(), Some(1), "{s}");
    assert!(s.contains("unknown key `colour` at line 1"), "{s}");
}

#[test]
fn unknown_key_in_run_names_table() {
    let e = err("[run]\ncommand = \"x\"\n\nportt = 80\n");
    assert_eq!(e.key(), Some("run.portt"), "{e}");
    assert_eq!(e.line(), Some(4), "{e}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let e = err("[run]\ncommand = \"x\"\nport = \"x\"\n");
    let s = e.to_string();
    assert_eq!(e.key(), Some("run.port"), "{s}");
    assert_eq!(e.line(), Some(3), "{s}");
    assert!(s.contains("key `run.port` at line 3"), "{s}");
    assert!(s.contains("invalid type"), "{s}");

    let e = err("[run]\ncommand = \"x\"\nenv = { A = 1 }\n");
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.to_string().contains("run.env"), "{e}");
}

#[test]
fn port_zero_and_out_of_range() {
    let e = err("[run]\ncommand = \"x\"\nport = 0\n");
    assert_eq!((e.key(), e.line()), (Some("run.port"), Some(3)), "{e}");
    assert!(
        e.to_string().contains("port must be 1 to 65535, got 0"),
        "{e}"
    );
    let e = err("[run]\ncommand = \"x\"\nport = 70000\n");
    assert_eq!((e.key(), e.line()), (Some("run.port"), Some(3)), "{e}");
}

#[test]
fn the_run_user_is_carried_and_a_bad_one_named() {
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\nuser = \"www-data\"\n").unwrap();
    assert_eq!(c.run.user.as_ref().map(RunUser::as_str), Some("www-data"));
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\nuser = \"1000:1000\"\n").unwrap();
    assert_eq!(c.run.user.as_ref().map(RunUser::as_str), Some("1000:1000"));
    assert_eq!(
        SlipwayToml::parse("[run]\ncommand = \"x\"\n")
            .unwrap()
            .run
            .user,
        None
    );
    let e = err("[run]\ncommand = \"x\"\nuser = \"root; rm -rf /\"\n");
    assert_eq!((e.key(), e.line()), (Some("run.user"), Some(3)), "{e}");
    assert!(e.to_string().contains("invalid user"), "{e}");
}

#[test]
fn bad_durations() {
    let e = err("[run]\ncommand = \"x\"\nstop_timeout = \"soon\"\n");
    assert_eq!(
        (e.key(), e.line()),
        (Some("run.stop_timeout"), Some(3)),
        "{e}"
    );
    assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
    let e = err("[run]\ncommand = \"x\"\n[health]\ngrace = 2\n");
    assert_eq!((e.key(), e.line()), (Some("health.grace"), Some(4)), "{e}");
}

#[test]
fn empty_or_missing_run_command() {
    let e = err("[run]\ncommand = \"  \"\n");
    assert_eq!((e.key(), e.line()), (Some("run.command"), Some(2)), "{e}");
    assert!(e.to_string().contains("must not be empty"), "{e}");
    let e = err("[run]\nport = 80\n");
    assert_eq!(e.key(), Some("run.command"), "{e}");
    assert!(e.to_string().contains("missing key `run.command`"), "{e}");
    let e = err("name = \"a\"\n");
    assert_eq!(e.key(), Some("run"), "{e}");
    assert!(e.to_string().contains("missing the `[run]` table"), "{e}");
}

#[test]
fn generic_needs_build_command() {
    let e = err("type = \"generic\"\n[run]\ncommand = \"x\"\n");
    assert_eq!((e.key(), e.line()), (Some("type"), Some(1)), "{e}");
    assert!(e.to_string().contains("[build] command"), "{e}");
    assert!(
        SlipwayToml::parse(
            "type = \"generic\"\n[build]\ncommand = \"make\"\n[run]\ncommand = \"x\"\n"
        )
        .is_ok()
    );
}

#[test]
fn unknown_type() {
    let e = err("type = \"rust\"\n[run]\ncommand = \"x\"\n");
    assert_eq!((e.key(), e.line()), (Some("type"), Some(1)), "{e}");
    assert!(e.to_string().contains("python"), "{e}");
}

#[test]
fn two_health_checks() {
    let e = err("[run]\ncommand = \"x\"\nport = 1\n[health]\nhttp = \"/\"\ntcp = true\n");
    assert_eq!((e.key(), e.line()), (Some("health.tcp"), Some(6)), "{e}");
    assert!(e.to_string().contains("choose one health check"), "{e}");
}

#[test]
fn http_check_needs_a_slash_and_no_pinned_port() {
    // Without `[run] port` the grabber gives the app one.
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n[health]\nhttp = \"/h\"\n")
        .expect("an http check without a pinned port");
    assert_eq!(c.run.port, None);
    let e = err("[run]\ncommand = \"x\"\nport = 1\n[health]\nhttp = \"h\"\n");
    assert_eq!((e.key(), e.line()), (Some("health.http"), Some(5)), "{e}");
}

#[test]
fn bad_name() {
    let e = err("name = \"Hello\"\n[run]\ncommand = \"x\"\n");
    assert_eq!((e.key(), e.line()), (Some("name"), Some(1)), "{e}");
    assert!(e.to_string().contains("invalid app name"), "{e}");
}

#[test]
fn syntax_error_has_line() {
    let e = err("[run]\ncommand = \"x\n");
    assert_eq!(e.line(), Some(2), "{e}");
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = SlipwayToml::load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::Missing));
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn detection() {
    let dir = tempfile::tempdir().unwrap();
    let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n").unwrap();
    let e = c.resolve_build_type(dir.path()).unwrap_err();
    assert_eq!(e.key(), Some("type"), "{e}");
    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    assert_eq!(c.resolve_build_type(dir.path()).unwrap(), BuildType::Node);
    std::fs::write(dir.path().join("main.py"), "").unwrap();
    assert_eq!(c.resolve_build_type(dir.path()).unwrap(), BuildType::Python);

    let dir = tempfile::tempdir().unwrap();
    let c = SlipwayToml::parse("[build]\ncommand = \"make\"\n[run]\ncommand = \"x\"\n").unwrap();
    assert_eq!(
        c.resolve_build_type(dir.path()).unwrap(),
        BuildType::Generic
    );
    let c = SlipwayToml::parse("type = \"python\"\n[run]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.resolve_build_type(dir.path()).unwrap(), BuildType::Python);
}

#[test]
fn shared_paths_are_inside_the_release_and_apart() {
    let c = SlipwayToml::parse(
        "[run]\ncommand = \"x\"\nshared = [\"uploads/\", \"config/local.yml\"]\n",
    )
    .unwrap();
    assert_eq!(c.run.shared, ["uploads", "config/local.yml"]);
    for (bad, line) in [
        ("shared = [\"../etc\"]", 3),
        ("shared = [\"/srv/x\"]", 3),
        ("shared = [\"\"]", 3),
        ("shared = [\".slipway/python\"]", 3),
        ("shared = [\"a\",\n  \"a/b\"]", 4),
        ("shared = [\"a\", \"a\"]", 3),
    ] {
        let e = err(&format!("[run]\ncommand = \"x\"\n{bad}\n"));
        assert_eq!(
            (e.key(), e.line()),
            (Some("run.shared"), Some(line)),
            "{bad}: {e}"
        );
    }
}
