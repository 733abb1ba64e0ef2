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
    /// Manage admin users of the web UI (/ui).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Manage contexts (tenants).
    #[command(subcommand)]
    Context(ContextCmd),
    /// Manage mailboxes.
    #[command(subcommand)]
    Mailbox(MailboxCmd),
    /// Message-waiting pushes.
    #[command(subcommand)]
    Mwi(MwiCmd),
    /// Audio store maintenance.
    #[command(subcommand)]
    Audio(AudioCmd),
    /// Convert a recording file to a playback format, with the code of `GET …/audio?format=`.
    ///
    /// The input is recognised as a deposit would be: by content, or for headerless audio by
    /// --content-type or INPUT's extension (.ulaw, .alaw, .gsm, .sln, .sln16). Needs no
    /// configuration or database. Exit code 2: bad input or options; 1: OUTPUT not written.
    Transcode(TranscodeArgs),
}

#[derive(Args)]
struct TranscodeArgs {
    /// The recording to read.
    input: PathBuf,
    /// Where to write the result (`-` for standard output).
    output: PathBuf,
    /// opus, wav, wav-ulaw, wav-alaw, ulaw, alaw, sln, sln16, gsm or wav49 (default: from
    /// OUTPUT's extension, as in `…/audio.<ext>`).
    #[arg(long, short = 'f')]
    format: Option<String>,
    /// Opus bitrate in bit/s (8000, 12000, 16000, 24000, 32000, 48000 or 64000; default 16000).
    #[arg(long)]
    bitrate: Option<u32>,
    /// libopus complexity of an `opus` output, 0-10 (lower is faster; default 8, as
    /// `audio.opus_complexity`).
    #[arg(long, value_name = "N")]
    complexity: Option<u8>,
    /// Sample rate of a `wav` output (8000, 16000 or 48000; default: the input's rate).
    #[arg(long)]
    rate: Option<u32>,
    /// The Content-Type a deposit of this file would carry (default: from INPUT's extension for
    /// raw formats, otherwise recognised by content).
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
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
enum AudioCmd {
    /// Remove audio objects no message or greeting references and older than
    /// audio.orphan_grace_secs, now (servers also do it every audio.orphan_sweep_secs).
    Gc {
        /// Only count what would be removed.
        #[arg(long)]
        dry_run: bool,
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
enum AdminCmd {
    /// Create an admin who signs in to the web UI at /ui; without --password a random one is
    /// printed once.
    Create {
        /// The admin's email address (the sign-in name).
        email: String,
        /// The password (10-256 characters); default: a random one, printed once.
        #[arg(long)]
        password: Option<String>,
        /// Limit the admin to this context (repeat for several); default: every context.
        #[arg(long = "context", value_name = "CONTEXT")]
        contexts: Vec<String>,
    },
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
        Command::Admin(AdminCmd::Create {
            email,
            password,
            contexts,
        }) => cli::Cmd::AdminCreate {
            email,
            password,
            contexts,
        },
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
        Command::Audio(AudioCmd::Gc { dry_run }) => cli::Cmd::AudioGc { dry_run },
        Command::Transcode(t) => cli::Cmd::Transcode(cli::TranscodeArgs {
            input: t.input,
            output: t.output,
            format: t.format,
            bitrate: t.bitrate,
            complexity: t.complexity,
            rate: t.rate,
            content_type: t.content_type,
        }),
    };
    cli::run(cmd, overrides)
}
