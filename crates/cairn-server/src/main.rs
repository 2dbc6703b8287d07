//! `cairn-server`: parses flags, starts the server, and stops it gracefully on SIGINT or
//! SIGTERM. Everything else lives in the library.

use cairn_server::config::{Command, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt().with_env_filter(cairn_server::log_filter()).init();
    if let Some(Command::Invite) = config.command {
        let (store, _) = cairn_server::open_stores(&config).await?;
        let token = hex::encode(cairn_server::auth::random32());
        store.create_invite(&token).await?;
        println!("{token}");
        return Ok(());
    }
    let server = cairn_server::start(config.clone()).await?;
    match &config.database {
        Some(url) => tracing::info!(
            addr = %server.addr,
            database = %cairn_server::redact_url(url),
            nats = config.nats.as_deref().unwrap_or("none"),
            "cairn-server listening"
        ),
        None => {
            tracing::info!(addr = %server.addr, data = %config.data.display(), "cairn-server listening")
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing commits, closing sockets");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}
