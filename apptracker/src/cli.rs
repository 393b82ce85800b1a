//! The `apptracker` binary: `serve` runs the control plane, `token create`
//! and `key show` help set up an installation, `openapi` prints the API's
//! OpenAPI document. (`slipway dev`, in `slipway-platform`, runs the whole
//! platform on one machine with this crate's `Common` flags.)

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Application, Config};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "apptracker", version, about = "Slipway's control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The flags that say where AppTracker's configuration comes from.
#[derive(clap::Args)]
pub struct Common {
    /// TOML config file (every key optional; see README "Configuration").
    #[arg(long, env = "APPTRACKER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the embedded database and artifacts live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `sqlite://...` or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Serve(Common),
    /// Manage API tokens directly in the database (for the first admin token).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The key the in-process builder signs artifacts with.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Print the API's OpenAPI 3.1 document (what `GET /api/v1/openapi.json`
    /// serves), for client generators and validators.
    Openapi,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the public key (`ed25519:...`) grabbers must trust
    /// (`grabber --trusted-key`); generates the key first if it is missing.
    Show {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it (the only time it is shown).
    Create {
        #[command(flatten)]
        common: Common,
        /// A unique name, shown in logs and the token list.
        #[arg(long)]
        name: String,
        /// viewer, deployer or admin (people); agent (grabbers and
        /// versioncheckers, with --cluster); builder (packer workers).
        #[arg(long)]
        role: String,
        /// The cluster an agent token acts for.
        #[arg(long)]
        cluster: Option<deploy::Cluster>,
        /// The one host of --cluster an agent token reports for.
        #[arg(long, requires = "cluster")]
        host: Option<deploy::HostName>,
    },
}

impl Common {
    /// The configuration: the file's (or the defaults), then the flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            c.database_url = Some(u.clone());
        }
        Ok(c)
    }
}

/// Logs to stdout (text, or JSON with `SLIPWAY_LOG_FORMAT=json` or
/// `SLIPWAY_LOG_JSON`), filtered by `RUST_LOG`.
pub fn init_tracing() {
    use deploy::binary::{LogFormat, Tracing};
    Tracing::new(LogFormat::from_env())
        .default_filter("info,sqlx=warn,tower_http=warn")
        .init();
}

/// The binary's entry point (also used by the end-to-end tests' copies of
/// the binary).
pub fn main() -> std::process::ExitCode {
    deploy::binary::run(run())
}

async fn run() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    let shutdown = deploy::binary::shutdown_on_signal();
    match cli.command {
        Command::Serve(common) => {
            let app = Application::build(common.config()?).await?;
            app.run(shutdown).await
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    common,
                    name,
                    role,
                    cluster,
                    host,
                },
        } => {
            let req = deploy::CreateToken {
                name,
                role,
                cluster,
                host,
            };
            let token =
                crate::startup::bootstrap_scoped_token(&common.config()?, &req, false).await?;
            println!("{token}");
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Show { common },
        } => {
            let config = common.config()?;
            let (key, generated) = config.signing_key()?;
            if generated {
                // stderr: stdout holds the public key only, for scripts.
                eprintln!(
                    "generated the signing key {}",
                    config.signing_key_path().display()
                );
            }
            println!("{}", key.public_key());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", crate::http::document_json());
            Ok(())
        }
    }
}
