//! Before the window opens: find the profile, start the embedded server when no server is
//! given, and on the first run create the identity, a first space and welcome notes.

use crate::Args;
use anyhow::{Context, Result};
use bevy::prelude::Resource;
use cairn_client::{Client, ClientHandle, Content, Draft};
use cairn_proto::{Handle, Policy, SpaceId};
use std::path::{Path, PathBuf};

/// An in-process server on SQLite in the profile directory; shut down gracefully on drop.
#[derive(Resource)]
pub struct EmbeddedServer {
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<cairn_server::RunningServer>,
    pub url: String,
}

impl EmbeddedServer {
    /// Starts on the port it had last time when free, else on any.
    pub fn start(home: &Path) -> Result<Self> {
        let data = home.join("server");
        std::fs::create_dir_all(&data)?;
        let port_file = data.join("port");
        let last: u16 = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("cairn-server")
            .build()?;
        let server = runtime.block_on(async {
            let mut config = cairn_server::Config::for_data_dir(&data);
            config.listen = format!("127.0.0.1:{last}").parse()?;
            match cairn_server::start(config.clone()).await {
                Ok(s) => Ok(s),
                Err(_) if last != 0 => {
                    config.listen = "127.0.0.1:0".parse()?;
                    cairn_server::start(config).await
                }
                Err(e) => Err(e),
            }
        })?;
        std::fs::write(&port_file, server.addr.port().to_string())?;
        let url = server.ws_url();
        bevy::log::info!("embedded server on {url}, data in {}", data.display());
        Ok(EmbeddedServer { runtime: Some(runtime), server: Some(server), url })
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let (Some(rt), Some(server)) = (self.runtime.take(), self.server.take()) {
            let _ = rt.block_on(server.shutdown());
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}

pub struct Boot {
    pub handle: ClientHandle,
    pub space: Option<SpaceId>,
    pub embedded: Option<EmbeddedServer>,
}

/// The assets folder: beside the sources in a checkout, else beside the executable.
pub fn assets_dir() -> String {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    if dev.is_dir() {
        return dev.display().to_string();
    }
    exe_dir().join("assets").display().to_string()
}

/// The WGSL folder, registered as the `shaders://` asset source.
pub fn shaders_dir() -> String {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    if dev.is_dir() {
        return dev.display().to_string();
    }
    exe_dir().join("shaders").display().to_string()
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn default_handle() -> Handle {
    let user = std::env::var("USER").unwrap_or_default().to_ascii_lowercase();
    let cleaned: String =
        user.chars().filter(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c)).take(32).collect();
    Handle::new(cleaned).unwrap_or_else(|_| Handle::from_static("me"))
}

pub fn boot(args: &Args) -> Result<Boot> {
    if let Some(ca) = &args.ca {
        cairn_client::tls::trust_ca_file(ca).context("the certificate authority (--ca)")?;
    }
    let home = args.home.clone().unwrap_or_else(cairn_client::profile::default_home);
    let embedded = match &args.server {
        Some(_) => None,
        None => Some(EmbeddedServer::start(&home).context("starting the embedded server")?),
    };
    let url = args
        .server
        .clone()
        .or_else(|| embedded.as_ref().map(|e| e.url.clone()))
        .expect("one of the two");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let passphrase = std::env::var("CAIRN_PASSPHRASE").ok();
    let mut client = match Client::open(&home, passphrase.as_deref()) {
        Ok(mut c) => {
            if embedded.is_some() && c.server() != url {
                c.set_server(&url)?;
            }
            c
        }
        Err(cairn_client::ClientError::NoProfile(_)) => {
            let handle = args.handle.clone().unwrap_or_else(default_handle);
            bevy::log::info!("first run: creating the identity of {handle} in {}", home.display());
            let mut c = rt
                .block_on(Client::init(&home, &url, &handle, None, passphrase.as_deref()))
                .context("registering this device")?;
            rt.block_on(welcome(&mut c)).context("creating the welcome space")?;
            c
        }
        Err(e) => return Err(e).context("opening the profile"),
    };
    let space = match &args.space {
        Some(name) => {
            // The space may be known only to the server yet.
            if client.resolve_space(name).is_err() && rt.block_on(client.connect()).is_ok() {
                let _ = rt.block_on(client.sync());
            }
            Some(client.resolve_space(name).with_context(|| format!("opening space {name}"))?)
        }
        None => client.spaces()?.first().map(|s| s.id),
    };
    client.disconnect();
    Ok(Boot { handle: ClientHandle::spawn(client), space, embedded })
}

/// A first space with notes that show what Cairn does.
async fn welcome(client: &mut Client) -> Result<()> {
    let space = client.create_space("Welcome", Policy::default()).await?;
    let notes: [(&str, [f32; 3]); 4] = [
        (
            "Welcome to Cairn. Notes stand where people left them, for whoever comes next. Everything they say is end-to-end encrypted.",
            [0.0, 1.5, -2.2],
        ),
        (
            "Walk with W A S D, look around by dragging with the right mouse button, scroll to move forward and back.",
            [-1.9, 1.3, -1.4],
        ),
        (
            "Press N to leave a note: it follows the pointer over the floor. Click to drop it, type, press Enter. Drop an image file on the window to hang a picture.",
            [1.9, 1.3, -1.4],
        ),
        (
            "Click a note to focus it. R replies next to it, keys 1 to 5 react, Delete removes your own.",
            [-0.9, 1.1, 0.6],
        ),
    ];
    for (text, at) in notes {
        client.post(&space, Draft::text(text, at)).await?;
    }
    let picture = crate::render::welcome_picture();
    client
        .post(
            &space,
            Draft {
                text: "A cairn: stones left to show the way.".into(),
                content: Content::Image(picture),
                pose: cairn_crypto::Pose { position: [1.2, 1.6, -3.2], ..Default::default() },
                ..Draft::default()
            },
        )
        .await?;
    if let Some(voice) = crate::audio::welcome_voice() {
        let pose = cairn_crypto::Pose { position: [-1.4, 1.25, -3.0], ..Default::default() };
        client
            .post(
                &space,
                Draft {
                    text: "A voice note: click the orb to hear it.".into(),
                    content: Content::Voice(voice),
                    pose,
                    ..Draft::default()
                },
            )
            .await?;
    }
    Ok(())
}
