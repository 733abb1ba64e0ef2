//! The `voxmail` command.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use voxmail::cli;
use voxmail::config::Overrides;

#[derive(Parser)]
#[command(
    name = "voxmail",
    version,
    about = "Centralized voicemail for PBX clusters"
)]
struct Cli {
    /// Configuration file (default: ./voxmail.toml if it exists, or $VOXMAIL_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded SQLite database and audio (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (default: SQLite under the data directory).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and background workers.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Manage contexts (tenants).
    #[command(subcommand)]
    Context(ContextCmd),
    /// Manage mailboxes.
    #[command(subcommand)]
    Mailbox(MailboxCmd),
    /// Message-waiting pushes.
    #[command(subcommand)]
    Mwi(MwiCmd),
}

#[derive(Subcommand)]
enum MwiCmd {
    /// Queue the current counts of every mailbox for every MWI target (a running server sends them).
    Resync {
        #[arg(long)]
        context: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the commented example configuration (all defaults).
    PrintDefault,
}

#[derive(Subcommand)]
enum ApikeyCmd {
    /// Create a key and print its token once.
    Create {
        #[arg(long)]
        name: String,
        /// admin or pbx.
        #[arg(long)]
        role: String,
        /// Limit the key to one context.
        #[arg(long)]
        context: Option<String>,
    },
    /// List keys (never their tokens).
    List,
    /// Revoke a key by id or token prefix.
    Revoke { key: String },
}

#[derive(Subcommand)]
enum ContextCmd {
    /// Create a context.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List contexts.
    List,
}

#[derive(Subcommand)]
enum MailboxCmd {
    /// Create a mailbox, e.g. `voxmail mailbox create 1001@default --name "Alice" --pin 1234`.
    Create(MailboxCreate),
    /// List mailboxes.
    List {
        #[arg(long)]
        context: Option<String>,
    },
}

#[derive(Args)]
struct MailboxCreate {
    /// mailbox@context
    address: String,
    /// Full name (Asterisk fullname).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    pager: Option<String>,
    /// PIN (digits).
    #[arg(long)]
    pin: Option<String>,
    /// Messages per folder.
    #[arg(long)]
    maxmsg: Option<u32>,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let overrides = Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        database_url: args.database_url,
        listen: match &args.command {
            Command::Serve { listen } => *listen,
            _ => None,
        },
    };
    let cmd = match args.command {
        Command::Serve { .. } => cli::Cmd::Serve,
        Command::Config(ConfigCmd::PrintDefault) => cli::Cmd::PrintDefaultConfig,
        Command::Apikey(ApikeyCmd::Create {
            name,
            role,
            context,
        }) => cli::Cmd::ApikeyCreate {
            name,
            role,
            context,
        },
        Command::Apikey(ApikeyCmd::List) => cli::Cmd::ApikeyList,
        Command::Apikey(ApikeyCmd::Revoke { key }) => cli::Cmd::ApikeyRevoke { key },
        Command::Context(ContextCmd::Create { name, description }) => {
            cli::Cmd::ContextCreate { name, description }
        }
        Command::Context(ContextCmd::List) => cli::Cmd::ContextList,
        Command::Mailbox(MailboxCmd::Create(m)) => cli::Cmd::MailboxCreate {
            address: m.address,
            fullname: m.name,
            email: m.email,
            pager: m.pager,
            pin: m.pin,
            maxmsg: m.maxmsg,
        },
        Command::Mailbox(MailboxCmd::List { context }) => cli::Cmd::MailboxList { context },
        Command::Mwi(MwiCmd::Resync { context }) => cli::Cmd::MwiResync { context },
    };
    cli::run(cmd, overrides)
}
