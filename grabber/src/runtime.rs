//! Whether this host can run a release: the interpreter its dependencies
//! were built for (python 3.11, node 20) must be the one the app would get
//! here, asked with the same probe the packer used on the build machine.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use deploy::Runtime;

/// How long the interpreter may take to print its version.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the runtime's probe with the app's environment (so `PATH` is the
/// one the app will see), as the app's user (that `PATH` starts in the
/// release), and compares versions. The error says what the release needs
/// and what the host has.
pub(crate) async fn check(
    runtime: &Runtime,
    env: Vec<(OsString, OsString)>,
    user: Option<&crate::user::AppUser>,
) -> Result<(), String> {
    let (program, args) = Runtime::probe(runtime.kind);
    let mut cmd = tokio::process::Command::new(program);
    if let Some(user) = user {
        cmd.gid(user.gid).uid(user.uid);
    }
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let needs = format!("the release needs {runtime}");
    let output = match tokio::time::timeout(PROBE_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("{needs}, but `{program}` cannot run here: {e}")),
        Err(_) => {
            return Err(format!(
                "{needs}, but `{program}` did not print its version within {PROBE_TIMEOUT:?}"
            ));
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{needs}, but `{program}` failed here ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    let have = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if have != runtime.version {
        return Err(format!(
            "{needs}, but this host's `{program}` is {have}: install {runtime} on the host or build \
             with the host's version"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use deploy::RuntimeKind;

    use super::*;

    fn path_env() -> Vec<(OsString, OsString)> {
        std::env::var_os("PATH")
            .map(|p| vec![(OsString::from("PATH"), p)])
            .unwrap_or_default()
    }

    fn host_python() -> String {
        let out = std::process::Command::new("python3")
            .args(Runtime::probe(RuntimeKind::Python).1)
            .output()
            .expect("python3 runs on test machines");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[tokio::test]
    async fn the_same_version_passes_and_another_is_refused_by_name() {
        let version = host_python();
        assert!(version.starts_with("3."), "{version}");
        let same = Runtime {
            kind: RuntimeKind::Python,
            version: version.clone(),
        };
        check(&same, path_env(), None).await.unwrap();

        let other = Runtime {
            kind: RuntimeKind::Python,
            version: "2.7".into(),
        };
        let e = check(&other, path_env(), None).await.unwrap_err();
        assert!(
            e.contains("needs python 2.7") && e.contains(&format!("is {version}")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_named() {
        let node = Runtime {
            kind: RuntimeKind::Node,
            version: "20".into(),
        };
        let env = vec![(OsString::from("PATH"), OsString::from("/nonexistent"))];
        let e = check(&node, env, None).await.unwrap_err();
        assert!(
            e.contains("needs node 20") && e.contains("`node` cannot run"),
            "{e}"
        );
    }
}
