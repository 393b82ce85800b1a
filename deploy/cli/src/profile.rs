//! Profiles: the servers a person deploys to and their tokens, saved by
//! `deploy login` in `~/.config/slipway/config.toml` (the XDG config
//! directory; `SLIPWAY_CONFIG` names another file), private to the user
//! (mode 0600, refused otherwise, as ssh refuses a readable key).
//!
//! ```toml
//! default = "prod"
//!
//! [profiles.prod]
//! server = "https://slipway.example.com"
//! token = "slp_…"
//!
//! [profiles.staging]
//! server = "https://slipway.staging.example.com"
//! ca_file = "/etc/ssl/private-ca.pem"
//! token = "slp_…"
//! ```
//!
//! `--profile NAME` (or `SLIPWAY_PROFILE`) picks one, else `default` does;
//! `--server`, `--ca-file`, `--token-file` and their environment variables
//! still win over the profile's values.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::exit::{USAGE, coded};

/// The environment variable naming another config file.
const CONFIG_ENV: &str = "SLIPWAY_CONFIG";

/// The config file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default: Option<String>,
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, Profile>,
}

/// One installation of Slipway and how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    pub(crate) server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
}

/// Where the config file is: `SLIPWAY_CONFIG`, else
/// `$XDG_CONFIG_HOME/slipway/config.toml` (`~/.config/…`).
pub(crate) fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    use etcetera::BaseStrategy;
    let base = etcetera::choose_base_strategy().map_err(|e| {
        coded(
            USAGE,
            format!("cannot find your config directory ({e}); set {CONFIG_ENV}=FILE"),
        )
    })?;
    Ok(base.config_dir().join("slipway").join("config.toml"))
}

/// The config file at `path`; `None` when there is none. A file others may
/// read, or one that does not parse, is an error that names it.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<ConfigFile>> {
    let text = match deploy::binary::read_private_file(path) {
        Ok(t) => t,
        Err(deploy::binary::TokenError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(coded(USAGE, e.to_string())),
    };
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        coded(
            USAGE,
            format!("{}: {}", path.display(), e.to_string().trim_end()),
        )
    })?;
    Ok(Some(file))
}

/// Writes the config file: created private (0600) in a private directory,
/// replaced whole (written aside, then renamed), so a crash never leaves
/// half a file or a moment where others could read it.
pub(crate) fn save(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let text = toml::to_string_pretty(file)?;
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.toml.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The profile to use: `name` when given (an error naming the ones there
/// are when it is not in the file), else the file's default, else none.
pub(crate) fn select(
    file: Option<&ConfigFile>,
    name: Option<&str>,
    path: &Path,
) -> anyhow::Result<Option<(String, Profile)>> {
    let Some(file) = file else {
        return match name {
            Some(n) => Err(coded(
                USAGE,
                format!(
                    "no profile {n:?}: {} does not exist yet; run `deploy login --profile {n} \
                     --server URL`",
                    path.display()
                ),
            )),
            None => Ok(None),
        };
    };
    let wanted = name.or(file.default.as_deref());
    let Some(wanted) = wanted else {
        return Ok(None);
    };
    match file.profiles.get(wanted) {
        Some(p) => Ok(Some((wanted.to_string(), p.clone()))),
        None => {
            let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
            Err(coded(
                USAGE,
                format!(
                    "no profile {wanted:?} in {}; profiles: {} — see `deploy login --profile \
                     {wanted}`",
                    path.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_saved_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway/config.toml");
        let mut file = ConfigFile {
            default: Some("prod".into()),
            ..Default::default()
        };
        file.profiles.insert(
            "prod".into(),
            Profile {
                server: "https://slipway.example.com".into(),
                ca_file: None,
                token: Some("slp_secret".into()),
            },
        );
        save(&path, &file).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let back = load(&path).unwrap().unwrap();
        let (name, p) = select(Some(&back), None, &path).unwrap().unwrap();
        assert_eq!(
            (name.as_str(), p.token.as_deref()),
            ("prod", Some("slp_secret"))
        );

        // Readable by others: refused, saying how to fix it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn an_unknown_profile_names_the_known_ones() {
        let path = Path::new("/x/config.toml");
        let mut file = ConfigFile::default();
        file.profiles.insert(
            "prod".into(),
            Profile {
                server: "https://a".into(),
                ca_file: None,
                token: None,
            },
        );
        let e = select(Some(&file), Some("stage"), path).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no profile \"stage\" in /x/config.toml; profiles: prod — see `deploy login --profile stage`"
        );
        assert!(select(None, None, path).unwrap().is_none());
        assert!(select(Some(&file), None, path).unwrap().is_none());
    }
}
