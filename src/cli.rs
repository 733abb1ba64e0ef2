//! The commands behind `src/main.rs`: they load the configuration, open the same database as the
//! server, and call the services — except `transcode`, which works on files alone.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::audio::{self, OutputFormat, Rendition};
use crate::config::{AudioConfig, Config, EXAMPLE_TOML, Overrides};
use crate::domain::{AudioFormat, MailboxAddress, Principal, Role};
use crate::service::MailboxSettings;

/// A parsed command.
pub enum Cmd {
    Serve,
    PrintDefaultConfig,
    ApikeyCreate {
        name: String,
        role: String,
        context: Option<String>,
    },
    ApikeyList,
    /// `voxmail admin create`: an admin user of the web UI.
    AdminCreate {
        email: String,
        password: Option<String>,
        contexts: Vec<String>,
    },
    ApikeyRevoke {
        key: String,
    },
    ContextCreate {
        name: String,
        description: String,
    },
    ContextList,
    MailboxCreate {
        address: String,
        fullname: Option<String>,
        email: Option<String>,
        pager: Option<String>,
        pin: Option<String>,
        maxmsg: Option<u32>,
    },
    MailboxList {
        context: Option<String>,
    },
    MwiResync {
        context: Option<String>,
    },
    /// `voxmail audio gc`: one pass of the orphan collector.
    AudioGc {
        dry_run: bool,
    },
    /// `voxmail transcode`: one file to one rendition; needs no configuration or database.
    Transcode(TranscodeArgs),
}

/// What `voxmail transcode` converts, and to what.
pub struct TranscodeArgs {
    /// The recording to read.
    pub input: PathBuf,
    /// Where to write the rendition; `-` is standard output.
    pub output: PathBuf,
    /// A `?format=` name; `None` takes the format from the output's extension.
    pub format: Option<String>,
    /// Opus bitrate in bit/s; `None` is `audio.opus_bitrate`'s built-in default (16 kbit/s).
    pub bitrate: Option<u32>,
    /// libopus complexity (0–10); `None` is `audio.opus_complexity`'s built-in default (8).
    pub complexity: Option<u8>,
    /// Sample rate of a `wav` rendition; `None` keeps the recording's rate.
    pub rate: Option<u32>,
    /// The Content-Type a deposit of the file would carry; `None` derives it from the input's
    /// extension for headerless formats and otherwise recognises the file by content.
    pub content_type: Option<String>,
}

/// Why `voxmail transcode` failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The input, its audio or the options are unusable (exit code 2).
    #[error("{0}")]
    Input(String),
    /// The result could not be written (exit code 1).
    #[error("{0}")]
    Output(String),
}

/// Runs a command; errors are printed, and the exit code says whether it worked.
pub fn run(cmd: Cmd, overrides: Overrides) -> ExitCode {
    if let Cmd::PrintDefaultConfig = cmd {
        print!("{EXAMPLE_TOML}");
        return ExitCode::SUCCESS;
    }
    if let Cmd::Transcode(args) = &cmd {
        return match transcode(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("voxmail transcode: {e}");
                ExitCode::from(match e {
                    TranscodeError::Input(_) => 2,
                    TranscodeError::Output(_) => 1,
                })
            }
        };
    }
    let config = match Config::load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("voxmail: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config, matches!(cmd, Cmd::Serve));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxmail: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(cmd, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxmail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG_FILTER));
    // Admin commands print their results on stdout; only warnings go to stderr.
    let filter = if serving {
        filter
    } else {
        EnvFilter::new("warn")
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn execute(cmd: Cmd, config: Config) -> anyhow::Result<()> {
    check_writable(&config)?;
    let listen = config.http.listen;
    let vm = crate::app::build(config).await?;
    let admin = Principal::local_admin();
    match cmd {
        Cmd::Serve => {
            let signals = crate::app::ShutdownSignals::listen();
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let running = crate::app::start(vm, listener).await?;
            let token = running.shutdown_token();
            tokio::spawn(async move {
                signals.recv().await;
                tracing::info!("shutdown signal received; draining in-flight requests");
                token.cancel();
            });
            running.wait().await;
            tracing::info!("stopped");
        }
        Cmd::PrintDefaultConfig => print!("{EXAMPLE_TOML}"),
        Cmd::Transcode(args) => transcode(&args)?,
        Cmd::ApikeyCreate {
            name,
            role,
            context,
        } => {
            let role =
                Role::parse(&role).ok_or_else(|| anyhow::anyhow!("--role must be admin or pbx"))?;
            let key = vm.create_api_key(&name, role, context.as_deref()).await?;
            eprintln!(
                "created API key {} ({}, role {}, {}); the token is shown only now:",
                key.record.id,
                key.record.name,
                key.record.role.as_str(),
                key.record.context.as_deref().unwrap_or("all contexts")
            );
            println!("{}", key.token);
        }
        Cmd::ApikeyList => {
            println!(
                "{:<36}  {:<12}  {:<5}  {:<16}  {:<7}  NAME",
                "ID", "PREFIX", "ROLE", "CONTEXT", "STATE"
            );
            for k in vm.list_api_keys().await? {
                println!(
                    "{:<36}  {:<12}  {:<5}  {:<16}  {:<7}  {}",
                    k.id.to_string(),
                    k.token_prefix,
                    k.role.as_str(),
                    k.context.as_deref().unwrap_or("*"),
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    k.name
                );
            }
        }
        Cmd::AdminCreate {
            email,
            password,
            contexts,
        } => {
            let (admin, generated) = vm
                .create_admin(&email, password.as_deref(), &contexts)
                .await?;
            let scope = if admin.contexts.is_empty() {
                "all contexts".to_owned()
            } else {
                admin.contexts.join(", ")
            };
            match generated {
                Some(p) => {
                    eprintln!(
                        "created admin {} ({scope}); sign in at /ui/login with this password, \
                         shown only now:",
                        admin.email
                    );
                    println!("{p}");
                }
                None => println!("created admin {} ({scope})", admin.email),
            }
        }
        Cmd::ApikeyRevoke { key } => {
            let k = vm.revoke_api_key(&key).await?;
            println!("revoked {} ({})", k.id, k.name);
        }
        Cmd::ContextCreate { name, description } => {
            let c = vm.create_context(&admin, &name, &description).await?;
            println!("created context {}", c.name);
        }
        Cmd::ContextList => {
            let mut after: Option<String> = None;
            loop {
                let page = vm.list_contexts(&admin, after.as_deref(), 500).await?;
                for c in &page.items {
                    println!("{}\t{}", c.name, c.description);
                }
                match (page.has_more, page.items.last()) {
                    (true, Some(last)) => after = Some(last.name.clone()),
                    _ => break,
                }
            }
        }
        Cmd::MailboxCreate {
            address,
            fullname,
            email,
            pager,
            pin,
            maxmsg,
        } => {
            let address: MailboxAddress = address.parse()?;
            let settings = MailboxSettings {
                pin,
                fullname,
                email,
                pager,
                maxmsg: maxmsg.map(Some),
                ..Default::default()
            };
            let m = vm.create_mailbox(&admin, &address, settings).await?;
            println!("created mailbox {}", m.address);
        }
        Cmd::MwiResync { context } => {
            let n = vm.resync_mwi(&admin, context.as_deref()).await?;
            println!("queued {n} MWI pushes; a running server sends them within a second");
        }
        Cmd::AudioGc { dry_run } => {
            if vm.config().audio.orphan_grace_secs == 0 {
                anyhow::bail!("audio.orphan_grace_secs is 0: the orphan collector is off");
            }
            let s = vm.collect_orphans(crate::domain::now_ms(), dry_run).await?;
            let verb = if dry_run { "would remove" } else { "removed" };
            println!(
                "listed {} audio objects, {} old enough to judge; {verb} {} ({} bytes); {} failed; {} scratch files removed",
                s.listed, s.checked, s.removed, s.removed_bytes, s.failed, s.scratch_removed
            );
        }
        Cmd::MailboxList { context } => {
            let mut cursor: Option<String> = None;
            loop {
                let page = vm
                    .list_mailboxes(&admin, context.as_deref(), None, cursor.as_deref(), 500)
                    .await?;
                for m in &page.items {
                    println!("{}\t{}\t{}", m.address, m.fullname, m.email);
                }
                match (page.has_more, page.items.last()) {
                    (true, Some(last)) => {
                        cursor = Some(crate::service::MailboxCursor::encode(last));
                    }
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

/// Reads `args.input`, recognises it as a deposit would, and writes the rendition with the
/// transcoder behind `GET …/audio?format=`.
pub fn transcode(args: &TranscodeArgs) -> Result<(), TranscodeError> {
    let input = |e: String| TranscodeError::Input(e);
    let format = match &args.format {
        Some(f) => OutputFormat::parse(f).ok_or_else(|| {
            input(format!(
                "unknown --format {f:?}; use one of {}",
                format_names()
            ))
        })?,
        None => args
            .output
            .extension()
            .and_then(|e| e.to_str())
            .and_then(OutputFormat::from_extension)
            .ok_or_else(|| {
                input(format!(
                    "cannot tell the output format from {:?}; give --format ({})",
                    args.output.display().to_string(),
                    format_names()
                ))
            })?,
    };
    if args.complexity.is_some() && format != OutputFormat::Opus {
        return Err(input(format!(
            "--complexity applies to --format opus only, not {}",
            format.as_str()
        )));
    }
    let defaults = AudioConfig::default();
    let rendition = Rendition::new(
        format,
        args.rate,
        args.bitrate,
        defaults.opus_bitrate,
        args.complexity.unwrap_or(defaults.opus_complexity),
    )
    .map_err(input)?;
    let open = || {
        File::open(&args.input)
            .map(BufReader::new)
            .map_err(|e| input(format!("cannot read {}: {e}", args.input.display())))
    };
    let refused = |e: audio::AudioError| input(format!("{}: {e}", args.input.display()));
    let content_type = args
        .content_type
        .as_deref()
        .or_else(|| raw_content_type(&args.input));
    let hint = audio::hint_from_content_type(content_type).map_err(refused)?;
    let format = recognise(&args.input, hint)?;
    let written = |e: std::io::Error| {
        TranscodeError::Output(format!("cannot write {}: {e}", args.output.display()))
    };
    let failed = |e: audio::AudioError| match e {
        audio::AudioError::Write(m) => {
            TranscodeError::Output(format!("cannot write {}: {m}", args.output.display()))
        }
        e => refused(e),
    };
    // The rendition streams from the input to the output (WAV headers are patched at the end, so
    // the output must be seekable: standard output gets a temporary file first).
    if args.output == Path::new("-") {
        let mut tmp = BufWriter::new(tempfile::tempfile().map_err(written)?);
        audio::transcode_stream(format, open()?, &rendition, &mut tmp).map_err(failed)?;
        let mut tmp = tmp.into_inner().map_err(|e| written(e.into_error()))?;
        tmp.rewind().map_err(written)?;
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut tmp, &mut stdout)
            .and_then(|_| stdout.flush())
            .map_err(written)?;
        return Ok(());
    }
    let mut out = BufWriter::new(File::create(&args.output).map_err(written)?);
    let made = audio::transcode_stream(format, open()?, &rendition, &mut out)
        .map_err(failed)
        .and_then(|_| out.flush().map_err(written));
    if made.is_err() {
        drop(out);
        let _ = std::fs::remove_file(&args.output);
    }
    made
}

/// The checks a deposit makes of a whole body (`service::audio_in`), reading the file as it
/// goes: the header, then the size against it, or for a compressed format a full decode; GSM
/// frames' magic nibbles.
fn recognise(path: &Path, hint: audio::RawHint) -> Result<AudioFormat, TranscodeError> {
    let open = || {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| TranscodeError::Input(format!("cannot read {}: {e}", path.display())))
    };
    let refused = |e: audio::AudioError| TranscodeError::Input(format!("{}: {e}", path.display()));
    let unreadable =
        |e: std::io::Error| TranscodeError::Input(format!("cannot read {}: {e}", path.display()));
    let mut f = open()?;
    let size = f.get_ref().metadata().map_err(unreadable)?.len();
    let (p, head) = audio::decode::read_header(hint, &mut f).map_err(refused)?;
    if p.format == AudioFormat::RawGsm {
        let mut check = audio::GsmFrameCheck::default();
        check.feed(&head).map_err(refused)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match f.read(&mut buf).map_err(unreadable)? {
                0 => break,
                n => check.feed(&buf[..n]).map_err(refused)?,
            }
        }
    }
    if p.format.is_compressed() {
        audio::measure(p.format, open()?, 0).map_err(refused)?;
    } else {
        audio::finish(&p, size).map_err(refused)?;
    }
    Ok(p.format)
}

fn format_names() -> String {
    OutputFormat::ALL.map(OutputFormat::as_str).join(", ")
}

/// The Content-Type a PBX sends with a headerless recording of this extension (Asterisk's names);
/// files with a header are recognised by content, as a deposit without a Content-Type is.
fn raw_content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "ulaw" | "ul" | "mu" | "pcm" | "pcmu" => Some("audio/PCMU"),
        "alaw" | "al" | "pcma" => Some("audio/PCMA"),
        "gsm" => Some("audio/GSM"),
        "sln" | "slin" | "raw" => Some("audio/x-sln"),
        "sln16" | "slin16" => Some("audio/x-sln16"),
        _ => None,
    }
}

/// Fails at once, naming the path, its owner and mode and our uid, when this process cannot write
/// the data directory, the SQLite file or the audio directory. Otherwise SQLite reports "attempt
/// to write a readonly database" (code 14) on every write, and nothing says which file or why.
fn check_writable(config: &Config) -> anyhow::Result<()> {
    let mut dirs = vec![config.data_dir.clone(), config.scratch_dir()];
    if config.audio.store == crate::config::AudioStore::Fs {
        dirs.push(config.audio_dir());
    }
    let mut files = Vec::new();
    if let Some(db) = sqlite_file(config) {
        dirs.extend(db.parent().map(Path::to_path_buf));
        for suffix in ["", "-wal", "-shm"] {
            let mut f = db.clone().into_os_string();
            f.push(suffix);
            files.push(PathBuf::from(f));
        }
    }
    for dir in dirs {
        // A directory not made yet is made in the nearest one that exists.
        let Some(dir) = dir.ancestors().find(|d| d.exists()) else {
            continue;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        tempfile::Builder::new()
            .prefix(".voxmail-write-check")
            .tempfile_in(dir)
            .map_err(|e| not_writable(dir, &e))?;
    }
    for file in files.iter().filter(|f| f.exists()) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .map_err(|e| not_writable(file, &e))?;
    }
    Ok(())
}

/// The SQLite database file in effect, if the database is SQLite on a file.
fn sqlite_file(config: &Config) -> Option<PathBuf> {
    let url = config.database_url();
    let rest = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn not_writable(path: &Path, e: &std::io::Error) -> anyhow::Error {
    use std::os::unix::fs::MetadataExt;
    let owner = match std::fs::metadata(path) {
        Ok(m) => format!("owner uid {}, mode {:04o}", m.uid(), m.mode() & 0o7777),
        Err(_) => "owner unknown".to_owned(),
    };
    // The owner of /proc/self is this process's effective uid (no libc call needed).
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    anyhow::anyhow!(
        "cannot write {}: {e} ({owner}; voxmail runs as uid {me}). Give this user the data \
         directory (chown -R), or run voxmail as its owner",
        path.display()
    )
}
