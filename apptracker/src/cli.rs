//! The `apptracker` binary: `serve` runs the control plane, `init` makes a
//! new installation, `token create` and `key show` help set one up,
//! `openapi` prints the API's OpenAPI document. (`slipway dev`, in `slipway-platform`, runs the whole
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
    /// Make a new installation: the config file (unless --config names an
    /// existing one), the database (migrated), the signing and secrets keys
    /// and the first admin token, in a 0600 file whose path is printed.
    /// Refuses to touch an existing installation.
    Init(InitArgs),
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

/// `apptracker init`'s flags.
#[derive(clap::Args)]
struct InitArgs {
    /// The config file: used as it is when it exists (say, the packaged
    /// /etc/slipway/apptracker.toml), written when it does not [default:
    /// DATA_DIR/apptracker.toml].
    #[arg(long, env = "APPTRACKER_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database, keys and admin token go; must be empty or
    /// missing (a new config's `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A new config's database (`postgres://...`; it must hold no tokens)
    /// [default: SQLite in the data dir].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// A new config's listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A new config's public URL, what hosts and workers reach.
    #[arg(long)]
    public_url: Option<String>,
    /// The first admin token's name.
    #[arg(long, default_value = "admin")]
    admin_name: String,
    /// Also print the admin token on stdout (last line), for a script that
    /// keeps it elsewhere; by default only its file's path is printed.
    #[arg(long)]
    show_token: bool,
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
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(_) => init_tracing(),
        // Their stdout is their output (a token, a key, next steps).
        _ => {
            use deploy::binary::{LogFormat, Tracing};
            Tracing::new(LogFormat::from_env())
                .default_filter("warn")
                .to_stderr()
                .init();
        }
    }
    // Under the unit's TimeoutStopSec (45 s).
    let shutdown = deploy::binary::shutdown_on_signal(std::time::Duration::from_secs(30));
    match cli.command {
        Command::Serve(common) => {
            let app = Application::build(common.config()?).await?;
            app.run(shutdown).await
        }
        Command::Init(args) => {
            let opts = crate::init::Options {
                config: args.config,
                data_dir: args.data_dir,
                database_url: args.database_url,
                listen: args.listen,
                public_url: args.public_url,
                admin_name: args.admin_name,
            };
            let done = crate::init::init(&opts).await?;
            print!("{}", crate::init::next_steps(&done));
            if args.show_token {
                use secrecy::ExposeSecret;
                println!("{}", done.admin_token.expose_secret());
            }
            Ok(())
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
