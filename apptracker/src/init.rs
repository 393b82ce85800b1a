//! `apptracker init`: a new installation from nothing. Writes the config
//! file (unless it names an existing one), creates and migrates the
//! database, generates the signing and secrets keys and mints the first
//! admin token into a 0600 file, then says what to do next. It refuses to
//! touch anything that looks like an existing installation: a data
//! directory with files in it, a key file that exists, a database that
//! holds tokens.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::Config;

/// The name of the admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The config file's name when `--config` does not name one.
pub const CONFIG_FILE: &str = "apptracker.toml";

/// What `apptracker init` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The config file: read when it exists, written when it does not
    /// (default: `<data_dir>/apptracker.toml`).
    pub config: Option<PathBuf>,
    /// Where the database, keys and admin token go (a new config's
    /// `data_dir`).
    pub data_dir: Option<PathBuf>,
    /// A new config's `database_url` (default: SQLite in the data dir).
    pub database_url: Option<String>,
    /// A new config's `listen`.
    pub listen: Option<SocketAddr>,
    /// A new config's `public_url`.
    pub public_url: Option<String>,
    /// The first admin token's name.
    pub admin_name: String,
}

/// What `init` made, for the summary and the next steps.
pub struct Initialized {
    pub config_path: PathBuf,
    /// False when the config file existed (a packaged one) and was used.
    pub config_written: bool,
    pub config: Config,
    pub admin_token_path: PathBuf,
    pub admin_token: SecretString,
    pub public_key: deploy::signing::PublicKey,
}

/// Makes a new installation (see the module's doc).
pub async fn init(opts: &Options) -> anyhow::Result<Initialized> {
    let (config_path, config, write_config) = settle_config(opts)?;
    refuse_existing(&config, &config_path).await?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    let (signing_key, _) = config.signing_key()?;
    crate::secrets::SecretsKey::load_or_generate(&config.secrets_key_path())?;
    let req = deploy::CreateToken {
        name: opts.admin_name.clone(),
        role: "admin".into(),
        cluster: None,
        host: None,
    };
    let token = crate::startup::bootstrap_scoped_token(&config, &req, false).await?;
    let token = SecretString::from(token);
    let admin_token_path = config.data_dir.join(ADMIN_TOKEN_FILE);
    write_new(&admin_token_path, 0o600, |f| {
        writeln!(f, "{}", token.expose_secret())
    })
    .context("cannot write the admin token")?;
    if let Some(text) = &write_config {
        // A URL with a password makes the file a secret.
        let mode = if has_password(config.database_url.as_deref()) {
            0o600
        } else {
            0o640
        };
        write_new(&config_path, mode, |f| f.write_all(text.as_bytes()))
            .context("cannot write the config file")?;
    }
    Ok(Initialized {
        config_path,
        config_written: write_config.is_some(),
        config,
        admin_token_path,
        admin_token: token,
        public_key: signing_key.public_key(),
    })
}

/// The config file's path, the configuration, and the text to write when
/// the file is new.
fn settle_config(opts: &Options) -> anyhow::Result<(PathBuf, Config, Option<String>)> {
    let config_path = match (&opts.config, &opts.data_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join(CONFIG_FILE),
        (None, None) => anyhow::bail!(
            "say where the installation goes: --data-dir DIR (the config is written there), \
             or --config FILE (an existing config file, or a new one to write)"
        ),
    };
    let config_path = std::path::absolute(&config_path)
        .with_context(|| format!("cannot resolve {}", config_path.display()))?;
    if config_path.exists() && opts.config.is_none() {
        anyhow::bail!(
            "refusing to initialise over an existing installation: {} exists (init never \
             replaces keys, tokens or data; remove the directory to start again)",
            config_path.display()
        );
    }
    if config_path.exists() {
        let flags = [
            ("--data-dir", opts.data_dir.is_some()),
            ("--database-url", opts.database_url.is_some()),
            ("--listen", opts.listen.is_some()),
            ("--public-url", opts.public_url.is_some()),
        ];
        let given: Vec<&str> = flags.iter().filter(|f| f.1).map(|f| f.0).collect();
        if !given.is_empty() {
            anyhow::bail!(
                "the config file {} exists and init uses it as it is: set what {} would say \
                 in it (or name a new file with --config)",
                config_path.display(),
                given.join(", ")
            );
        }
        let config = Config::load(Some(&config_path))?;
        return Ok((config_path, config, None));
    }
    let mut config = Config::default();
    let data_dir = match &opts.data_dir {
        Some(dir) => dir.clone(),
        None => config_path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    config.data_dir = std::path::absolute(&data_dir)
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    if let Some(url) = &opts.database_url {
        config.database_url = Some(url.clone());
    }
    if let Some(listen) = opts.listen {
        config.listen = listen;
    }
    if let Some(url) = &opts.public_url {
        config.public_url = Some(url.clone());
    }
    let text = config_text(&config)?;
    // What is written must read back as what is used.
    toml::from_str::<Config>(&text).context("the config init would write does not parse")?;
    Ok((config_path, config, Some(text)))
}

/// A new config file: the settings init was given, and the common ones
/// commented out with their defaults. No secret: keys are files, tokens
/// live in the database.
fn config_text(config: &Config) -> anyhow::Result<String> {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let data_dir = config
        .data_dir
        .to_str()
        .context("the data dir must be valid UTF-8 to be written in a config file")?;
    let mut text = String::from(
        "# AppTracker's configuration, written by `apptracker init`. Every key is\n\
         # optional (README, \"Settings\", lists them); environment variables\n\
         # APPTRACKER_<KEY> override it. Secrets do not belong here: the keys are\n\
         # files (data_dir, or *_file settings) and tokens live in the database.\n\n",
    );
    text += &format!("listen = {}\n", quote(&config.listen.to_string()));
    match &config.public_url {
        Some(url) => text += &format!("public_url = {}\n", quote(url)),
        None => {
            text += "# public_url = \"https://apptracker.example.com\"  # what hosts and workers reach\n"
        }
    }
    text += &format!("data_dir = {}\n", quote(data_dir));
    match &config.database_url {
        Some(url) => text += &format!("database_url = {}\n", quote(url)),
        None => {
            text += "# database_url = \"postgres://slipway@db.example.com/slipway\"  # default: SQLite in data_dir\n"
        }
    }
    text += "# redis_url = \"redis://127.0.0.1:6379\"  # several replicas, or grabbers on Redis\n\
             # builder = false                       # builds by `packer worker`s only\n\
             \n\
             # [tls]                                   # serve HTTPS here\n\
             # cert_file = \"/etc/slipway/tls/apptracker.pem\"\n\
             # key_file = \"/etc/slipway/tls/apptracker.key\"\n";
    Ok(text)
}

/// Fails when `config` points at anything an installation leaves behind.
async fn refuse_existing(config: &Config, config_path: &Path) -> anyhow::Result<()> {
    let existing = |what: &str, path: &Path| {
        anyhow::anyhow!(
            "refusing to initialise over an existing installation: {what} {} exists \
             (init never replaces keys, tokens or data; remove it to start again)",
            path.display()
        )
    };
    let dir = &config.data_dir;
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry =
                    entry.with_context(|| format!("cannot read the data dir {}", dir.display()))?;
                let path = entry.path();
                // The config file may live there, and a file system's
                // root has its lost+found.
                if path != config_path && entry.file_name() != "lost+found" {
                    return Err(existing("the data dir is not empty:", &path));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the data dir {}", dir.display()));
        }
    }
    for (what, path) in [
        ("the signing key", config.signing_key_path()),
        ("the secrets key", config.secrets_key_path()),
    ] {
        if path.exists() {
            return Err(existing(what, &path));
        }
    }
    // A database elsewhere (PostgreSQL) may already serve an installation:
    // tokens in it say so. Opening it migrates it, as `serve` would.
    if config.database_url.is_some() {
        let db = crate::db::Db::connect(&config.database_url()).await?;
        let tokens = db
            .tokens(None, 1)
            .await
            .context("cannot list the database's tokens")?;
        if !tokens.is_empty() {
            anyhow::bail!(
                "refusing to initialise over an existing installation: the database already \
                 holds tokens (`{}`, …); point --database-url at an empty database",
                tokens[0].name
            );
        }
    }
    Ok(())
}

/// Whether a database URL carries a password (`scheme://user:pass@host`).
fn has_password(url: Option<&str>) -> bool {
    let Some(url) = url else { return false };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Writes a file that must not exist yet, with `mode` from its creation.
fn write_new(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    fill(&mut file)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The summary and the next steps, for people (no secret in it).
pub fn next_steps(done: &Initialized) -> String {
    let c = &done.config;
    let config = done.config_path.display();
    let url = c
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", c.listen));
    let database = match &c.database_url {
        Some(url) => crate::db::redact(url),
        None => format!("SQLite, {}", c.data_dir.join("apptracker.db").display()),
    };
    let written = if done.config_written {
        "written"
    } else {
        "existing, used as it is"
    };
    format!(
        "AppTracker is initialised.\n\
         \n\
         \x20 config        {config} ({written})\n\
         \x20 data dir      {data}\n\
         \x20 database      {database} (migrated)\n\
         \x20 signing key   {signing} (public: {key})\n\
         \x20 secrets key   {secrets}\n\
         \x20 admin token   {token} (mode 0600; it is shown nowhere else)\n\
         \n\
         Next steps:\n\
         \x20 1. Start it: `systemctl enable --now slipway-apptracker` (from the package),\n\
         \x20    or `apptracker serve --config {config}`.\n\
         \x20 2. Act as the admin: export SLIPWAY_SERVER={url} SLIPWAY_TOKEN_FILE={token}\n\
         \x20 3. Make a token for each host's agents and for the build workers:\n\
         \x20      deploy token create web-1 --role agent --cluster prod --host web-1\n\
         \x20      deploy token create build-farm --role builder\n\
         \x20    and put each in the host's /etc/slipway/credentials/ (mode 0600).\n\
         \x20 4. Make every grabber trust this key (and each packer worker's):\n\
         \x20      echo {key} >> /etc/slipway/trusted.keys\n\
         \x20 5. Before hosts talk to it over a network, serve HTTPS ([tls] in the config)\n\
         \x20    or put it behind a TLS proxy and set public_url.\n",
        data = c.data_dir.display(),
        signing = c.signing_key_path().display(),
        key = done.public_key,
        secrets = c.secrets_key_path().display(),
        token = done.admin_token_path.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_seen() {
        assert!(has_password(Some("postgres://u:secret@db/x")));
        assert!(!has_password(Some("postgres://u@db/x")));
        assert!(!has_password(Some("sqlite:///var/lib/x.db")));
        assert!(!has_password(None));
    }

    #[tokio::test]
    async fn an_installation_is_made_once_and_its_config_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let opts = Options {
            data_dir: Some(data.clone()),
            listen: Some("127.0.0.1:18080".parse().unwrap()),
            admin_name: "ops".into(),
            ..Options::default()
        };
        let done = init(&opts).await.unwrap();
        assert!(done.config_written);
        assert_eq!(done.config_path, data.join(CONFIG_FILE));
        let read = Config::from_file(&done.config_path).unwrap();
        assert_eq!(read.data_dir, data);
        assert_eq!(read.listen.port(), 18080);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&done.admin_token_path), 0o600);
        assert_eq!(mode(&data), 0o700);
        let token = std::fs::read_to_string(&done.admin_token_path).unwrap();
        assert_eq!(token.trim(), done.admin_token.expose_secret());
        let steps = next_steps(&done);
        assert!(
            steps.contains(&done.public_key.to_string()) && !steps.contains(token.trim()),
            "{steps}"
        );

        let e = format!("{:#}", init(&opts).await.err().unwrap());
        assert!(e.contains("existing installation"), "{e}");
        // The existing config, with flags that would contradict it.
        let again = Options {
            config: Some(done.config_path.clone()),
            database_url: Some("sqlite:///tmp/other.db".into()),
            ..opts.clone()
        };
        let e = format!("{:#}", init(&again).await.err().unwrap());
        assert!(e.contains("--data-dir, --database-url"), "{e}");
        let e = format!("{:#}", init(&Options::default()).await.err().unwrap());
        assert!(e.contains("--data-dir"), "{e}");
    }
}
