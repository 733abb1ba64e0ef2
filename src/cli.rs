//! The commands behind `src/main.rs`: they load the configuration, open the same database as the
//! server, and call the services.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, EXAMPLE_TOML, Overrides};
use crate::domain::{MailboxAddress, Principal, Role};
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
}

/// Runs a command; errors are printed, and the exit code says whether it worked.
pub fn run(cmd: Cmd, overrides: Overrides) -> ExitCode {
    if let Cmd::PrintDefaultConfig = cmd {
        print!("{EXAMPLE_TOML}");
        return ExitCode::SUCCESS;
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
        .unwrap_or_else(|_| EnvFilter::new("info"));
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
    let listen = config.http.listen;
    let vm = crate::app::build(config).await?;
    let admin = Principal::local_admin();
    match cmd {
        Cmd::Serve => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let running = crate::app::start(vm, listener).await?;
            let token = running.shutdown_token();
            tokio::spawn(async move {
                crate::app::shutdown_signal().await;
                tracing::info!("shutdown signal received; draining in-flight requests");
                token.cancel();
            });
            running.wait().await;
            tracing::info!("stopped");
        }
        Cmd::PrintDefaultConfig => print!("{EXAMPLE_TOML}"),
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
