//! `cairn-cli`: Cairn from a terminal, for people, scripts and bots. Human-readable output by
//! default, `--json` for scripts; errors go to stderr with a non-zero exit code.

use anyhow::{Context, Result, bail};
use cairn_client::{
    Change, Client, ClientError, Content, Draft, LocalNote, Place, VideoClip, VoiceClip,
};
use cairn_crypto::{PlaceMark, PlacePose, PlaceRecord, Pose};
use cairn_proto::{
    DeviceId, DeviceKeys, Handle, NoteId, NoteKind, Policy, PostPolicy, Role, SpaceId,
};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "cairn-cli", version, about = "Leave and read spatial notes from a terminal")]
struct Cli {
    /// Profile directory (device keys, cache). Default: $CAIRN_HOME, else the platform's data dir.
    #[arg(long, global = true, env = "CAIRN_HOME")]
    home: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// A certificate authority (PEM) to trust for `wss://` servers besides the public ones:
    /// a team's own CA, or a server's self-signed certificate.
    #[arg(long, global = true, env = "CAIRN_CA_FILE")]
    ca: Option<PathBuf>,
    /// Passphrase protecting the device keys (set at init; needed after).
    #[arg(long, global = true, env = "CAIRN_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create this device's identity and register it with a server.
    Init {
        #[arg(long)]
        server: String,
        #[arg(long)]
        handle: Handle,
        /// Invite token, for invite-only servers.
        #[arg(long)]
        invite: Option<String>,
        /// Join an existing user as another device: make keys here, then run
        /// `cairn-cli device add KEYS` on a device already signed in.
        #[arg(long, conflicts_with = "invite")]
        join: bool,
    },
    /// Spaces: create, invite, remove, list, members.
    #[command(subcommand)]
    Space(SpaceCmd),
    /// Notes: post, get, delete.
    #[command(subcommand)]
    Note(NoteCmd),
    /// Places: physical frames of reference that notes stand in (list, create).
    #[command(subcommand)]
    Place(PlaceCmd),
    /// List the notes of a space (from the cache when the server is unreachable).
    Notes { space: String },
    /// Search decrypted notes on this device.
    Search { words: Vec<String> },
    /// Print notes of a space as they arrive, until interrupted.
    Watch { space: String },
    /// Devices: list, add, revoke.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// The safety code of a user's devices, to compare out of band.
    SafetyCode { user: Handle },
    /// Sync every space now.
    Sync,
}

#[derive(Subcommand)]
enum SpaceCmd {
    Create {
        name: String,
        /// Only owners may post.
        #[arg(long)]
        owners_post_only: bool,
        /// New members do not get the keys to earlier notes.
        #[arg(long)]
        no_history: bool,
    },
    Invite {
        space: String,
        handle: Handle,
        #[arg(long, default_value = "member", value_parser = str::parse::<Role>)]
        role: Role,
    },
    Remove {
        space: String,
        handle: Handle,
    },
    List,
    Members {
        space: String,
    },
}

#[derive(Subcommand)]
enum NoteCmd {
    Post {
        space: String,
        #[arg(long, default_value = "")]
        text: String,
        /// Position in metres in the space: X,Y,Z (`--at -1.2,1.3,-2` works as written); with
        /// `--place`, in the place's frame.
        #[arg(long, value_parser = parse_xyz, default_value = "0,0,0", allow_hyphen_values = true)]
        at: [f32; 3],
        /// The place the note stands in (its name, or the start of its id).
        #[arg(long)]
        place: Option<String>,
        #[arg(long)]
        image: Option<PathBuf>,
        /// An audio file (WAV, FLAC, MP3, Ogg/Vorbis, Ogg/Opus), encoded as Opus.
        #[arg(long)]
        voice: Option<PathBuf>,
        /// A video file (MP4/H.264, MOV, WebM/VP9 or AV1, Matroska), re-encoded here to VP9 +
        /// Opus in WebM: at most 60 s, fitted into 1280×720, no metadata from the source.
        #[arg(long)]
        video: Option<PathBuf>,
        #[arg(long)]
        reply_to: Option<String>,
        /// For example 30s, 10m, 2h, 7d.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// Write a note's text and media into DIR.
    Get {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
enum PlaceCmd {
    /// The places of a space, with their reference marks.
    List { space: String },
    /// Makes a place from two to eight reference marks, measured in one frame (metres): its
    /// frame has its origin on the floor below the first mark and its x axis toward the
    /// second. Others align with it by marking the same points in the same order.
    Create {
        space: String,
        name: String,
        /// A reference mark: NAME=X,Y,Z (for example `--mark "left door corner=0,2.1,0"`).
        #[arg(long = "mark", value_parser = parse_mark, allow_hyphen_values = true, required = true)]
        marks: Vec<(String, [f32; 3])>,
        /// How to find the marks, for people.
        #[arg(long, default_value = "")]
        description: String,
        /// A picture of the marks.
        #[arg(long)]
        image: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// A user's devices (default: yours).
    List {
        handle: Option<Handle>,
    },
    /// Sign another device into your user; KEYS as printed by `device keys` on it.
    Add {
        keys: String,
    },
    Revoke {
        device: String,
    },
    /// This device's public keys, for `device add` on another of your devices.
    Keys,
}

fn parse_xyz(s: &str) -> Result<[f32; 3], String> {
    let parts: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    match parts.as_slice() {
        [x, y, z] if parts.iter().all(|v| v.is_finite()) => Ok([*x, *y, *z]),
        _ => Err("three numbers: X,Y,Z".into()),
    }
}

fn parse_mark(s: &str) -> Result<(String, [f32; 3]), String> {
    let (name, at) = s.rsplit_once('=').ok_or("a mark is NAME=X,Y,Z")?;
    if name.trim().is_empty() {
        return Err("a mark needs a name: NAME=X,Y,Z".into());
    }
    Ok((name.trim().to_owned(), parse_xyz(at)?))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn kind_name(k: NoteKind) -> &'static str {
    match k {
        NoteKind::Text => "text",
        NoteKind::Voice => "voice",
        NoteKind::Image => "image",
        NoteKind::Video => "video",
        NoteKind::Reaction => "reaction",
        NoteKind::Place => "place",
    }
}

/// Each coordinate as the f32 it is (-1.2, not -1.2000000476837158).
fn floats<const N: usize>(v: [f32; N]) -> [f64; N] {
    v.map(|v| v.to_string().parse::<f64>().unwrap_or(0.0))
}

/// Place id -> name, for every place this device knows.
type PlaceNames = HashMap<NoteId, String>;

fn place_json(p: &Place) -> serde_json::Value {
    json!({
        "id": p.id.to_hex(),
        "name": p.record.name,
        "description": p.record.description,
        "author": p.author,
        "pending": p.seq.is_none(),
        "marks": p.record.marks.iter().map(|m| json!({"name": m.name, "at": floats(m.position)})).collect::<Vec<_>>(),
    })
}

fn note_json(n: &LocalNote, places: &PlaceNames) -> serde_json::Value {
    let body = n.body.as_ref();
    let place = body.and_then(|b| b.place).map(|p| {
        json!({
            "id": p.place.to_hex(),
            "name": places.get(&p.place),
            "at": floats(p.pose.position),
            "rotation": floats(p.pose.rotation),
        })
    });
    json!({
        "id": n.note_id.to_hex(),
        "space": n.space.to_hex(),
        "seq": n.seq,
        "pending": n.pending(),
        "sender": n.sender.to_hex(),
        "author": body.map(|b| b.author.clone()),
        "kind": body.map(|b| kind_name(b.kind)),
        "text": body.map(|b| b.text.clone()),
        "at": body.map(|b| floats(b.pose.position)),
        "place": place,
        "place_record": body.and_then(|b| b.place_record.as_ref()).map(|r| json!({
            "name": r.name,
            "description": r.description,
            "marks": r.marks.iter().map(|m| json!({"name": m.name, "at": floats(m.position)})).collect::<Vec<_>>(),
        })),
        "reply_to": body.and_then(|b| b.reply_to).map(|r| r.to_hex()),
        "reaction": body.and_then(|b| b.reaction.clone()),
        "media": body.map(|b| b.media.iter().map(|m| json!({"hash": m.hash.to_hex(), "mime": m.mime, "size": m.size})).collect::<Vec<_>>()),
        "error": n.error,
        "created_at": body.map(|b| b.created_at),
    })
}

fn note_line(n: &LocalNote, places: &PlaceNames) -> String {
    let id = &n.note_id.to_hex()[..8];
    let status = if n.pending() { " (pending)" } else { "" };
    match &n.body {
        Some(b) => {
            let [x, y, z] = b.pose.position;
            let extra = match b.kind {
                NoteKind::Voice => format!(" [voice {:.1}s]", f64::from(b.duration_ms) / 1000.0),
                NoteKind::Image => " [image]".to_owned(),
                NoteKind::Video => format!(" [video {:.1}s]", f64::from(b.duration_ms) / 1000.0),
                NoteKind::Reaction => {
                    format!(" [reacts {}]", b.reaction.clone().unwrap_or_default())
                }
                NoteKind::Text => String::new(),
                NoteKind::Place => match &b.place_record {
                    Some(r) => format!(
                        " [place {}: marks {}]",
                        r.name,
                        cairn_client::place::mark_names(&r.marks)
                    ),
                    None => " [place]".to_owned(),
                },
            };
            let [x, y, z] = b.place.map(|p| p.pose.position).unwrap_or([x, y, z]);
            let place = b
                .place
                .map(|p| match places.get(&p.place) {
                    Some(name) => format!(" in {name}"),
                    None => format!(" in place {}", &p.place.to_hex()[..8]),
                })
                .unwrap_or_default();
            let reply = b.reply_to.map(|r| format!(" ↪{}", &r.to_hex()[..8])).unwrap_or_default();
            format!(
                "{id}  {:<12} ({x:.1},{y:.1},{z:.1}){place}{reply}{extra}  {}{status}",
                b.author, b.text
            )
        }
        None => format!("{id}  [could not open: {}]{status}", n.error.clone().unwrap_or_default()),
    }
}

struct App {
    cli_json: bool,
    client: Client,
    /// What the last sync refused (planted key envelopes, say), for `sync --json`.
    refused: Vec<String>,
}

impl App {
    fn print_notes(&self, notes: &[LocalNote]) -> Result<()> {
        let places = self.place_names()?;
        if self.cli_json {
            println!(
                "{}",
                serde_json::Value::Array(notes.iter().map(|n| note_json(n, &places)).collect())
            );
        } else if notes.is_empty() {
            println!("(no notes)");
        } else {
            for n in notes {
                println!("{}", note_line(n, &places));
            }
        }
        Ok(())
    }

    /// The name of every place this device knows.
    fn place_names(&self) -> Result<PlaceNames> {
        let mut names = PlaceNames::new();
        for s in self.client.spaces()? {
            for p in self.client.places(&s.id)? {
                names.insert(p.id, p.record.name);
            }
        }
        Ok(names)
    }

    /// Syncs, and says on stderr what was refused.
    async fn sync(&mut self) -> Result<(), ClientError> {
        for change in self.client.sync().await? {
            if let Change::Refused { message, .. } = change {
                eprintln!("warning: {message}");
                self.refused.push(message);
            }
        }
        Ok(())
    }

    /// Connects and syncs; returns false (after a note on stderr) when offline, also when
    /// the connection is lost during the sync: what is cached is shown all the same.
    async fn go_online(&mut self) -> Result<bool> {
        match self.client.connect().await {
            Ok(()) => match self.sync().await {
                Ok(()) => Ok(true),
                Err(ClientError::Offline(why)) => {
                    eprintln!("offline ({why}): showing what this device has cached");
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            },
            Err(ClientError::Offline(why)) => {
                eprintln!("offline ({why}): showing what this device has cached");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn online(&mut self) -> Result<()> {
        self.client.connect().await.context("the server is needed for this")?;
        Ok(self.sync().await?)
    }

    fn space(&self, name: &str) -> Result<SpaceId> {
        Ok(self.client.resolve_space(name)?)
    }
}

/// Any supported audio file (WAV, FLAC, MP3, Ogg/Vorbis, Ogg/Opus), encoded as a voice note.
fn read_voice(path: &PathBuf) -> Result<VoiceClip> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let note = cairn_voice::encode_file(&bytes)
        .with_context(|| format!("{} as a voice note", path.display()))?;
    Ok(VoiceClip {
        ogg_opus: note.ogg_opus,
        waveform: note.waveform,
        duration_ms: note.duration_ms,
    })
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(ca) = &cli.ca {
        cairn_client::tls::trust_ca_file(ca)?;
    }
    let home = cli.home.clone().unwrap_or_else(cairn_client::profile::default_home);
    let passphrase = cli.passphrase.as_deref();
    if let Cmd::Init { server, handle, join: true, .. } = &cli.command {
        let client = Client::init_joining(&home, server, handle, passphrase)?;
        let k = client.identity().keys();
        let keys = format!("{}:{}", k.sign.to_hex(), k.agree.to_hex());
        if cli.json {
            println!("{}", json!({"handle": handle, "device": k.sign.to_hex(), "keys": keys}));
        } else {
            println!(
                "this device's keys: {keys}\non a device already signed in as {handle}, run:\n  cairn-cli device add {keys}"
            );
        }
        return Ok(());
    }
    if let Cmd::Init { server, handle, invite, .. } = &cli.command {
        let mut client = Client::init(&home, server, handle, invite.as_deref(), passphrase).await?;
        client.sync().await?;
        if cli.json {
            println!(
                "{}",
                json!({"handle": handle, "device": client.device().to_hex(), "home": home})
            );
        } else {
            println!("registered {handle} on {server}; profile in {}", home.display());
        }
        return Ok(());
    }
    let client = Client::open(&home, passphrase)?;
    let mut app = App { cli_json: cli.json, client, refused: Vec::new() };
    match cli.command {
        Cmd::Init { .. } => unreachable!("handled above"),
        Cmd::Sync => {
            app.online().await?;
            let outbox = app.client.outbox_len()?;
            if cli.json {
                println!("{}", json!({"synced": true, "outbox": outbox, "refused": app.refused}));
            } else {
                println!("synced; outbox holds {outbox}");
            }
        }
        Cmd::Space(SpaceCmd::Create { name, owners_post_only, no_history }) => {
            app.online().await?;
            let policy = Policy {
                post: if owners_post_only { PostPolicy::Owners } else { PostPolicy::Members },
                history_for_new_members: !no_history,
            };
            let id = app.client.create_space(&name, policy).await?;
            if cli.json {
                println!("{}", json!({"space": id.to_hex(), "name": name}));
            } else {
                println!("created space {name} ({id})");
            }
        }
        Cmd::Space(SpaceCmd::Invite { space, handle, role }) => {
            app.online().await?;
            let id = app.space(&space)?;
            app.client.invite(&id, &handle, role).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"space": id.to_hex(), "invited": handle, "role": role.as_str()})
                );
            } else {
                println!("{handle} is now a {} of {space}", role.as_str());
            }
        }
        Cmd::Space(SpaceCmd::Remove { space, handle }) => {
            app.online().await?;
            let id = app.space(&space)?;
            app.client.remove(&id, &handle).await?;
            if cli.json {
                println!("{}", json!({"space": id.to_hex(), "removed": handle}));
            } else {
                println!("removed {handle} from {space}; the space has a new key");
            }
        }
        Cmd::Space(SpaceCmd::List) => {
            app.go_online().await?;
            let spaces = app.client.spaces()?;
            if cli.json {
                println!("{}", serde_json::Value::Array(spaces.iter().map(|s| json!({
                    "id": s.id.to_hex(), "name": s.name, "role": s.role.map(Role::as_str), "members": s.members.len(), "epoch": s.epoch,
                })).collect()));
            } else if spaces.is_empty() {
                println!("(no spaces)");
            } else {
                for s in spaces {
                    println!(
                        "{}  {:<20} {:<7} {} members",
                        &s.id.to_hex()[..8],
                        s.name,
                        s.role.map(Role::as_str).unwrap_or("left"),
                        s.members.len()
                    );
                }
            }
        }
        Cmd::Space(SpaceCmd::Members { space }) => {
            app.go_online().await?;
            let id = app.space(&space)?;
            let view =
                app.client.spaces()?.into_iter().find(|s| s.id == id).context("space vanished")?;
            let mut members = Vec::new();
            for (h, r) in view.members {
                let devices = app.client.member_devices_of(&id, &h)?;
                members.push((h, r, devices));
            }
            if cli.json {
                println!(
                    "{}",
                    serde_json::Value::Array(
                        members
                            .iter()
                            .map(|(h, r, d)| json!({"handle": h, "role": r.as_str(), "devices": d.iter().map(|d| d.to_hex()).collect::<Vec<_>>()}))
                            .collect()
                    )
                );
            } else {
                for (h, r, d) in members {
                    let n = d.len();
                    println!(
                        "{h:<20} {:<7} {n} device{}",
                        r.as_str(),
                        if n == 1 { "" } else { "s" }
                    );
                }
            }
        }
        Cmd::Note(NoteCmd::Post {
            space,
            text,
            at,
            place,
            image,
            voice,
            video,
            reply_to,
            expires,
        }) => {
            // Made before going online: a file that cannot be such a note sends nothing.
            let content = match (image, voice, video) {
                (None, None, None) => Content::Text,
                (Some(path), None, None) => Content::Image(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                ),
                (None, Some(path), None) => Content::Voice(read_voice(&path)?),
                (None, None, Some(path)) => Content::Video(
                    VideoClip::from_file(&path)
                        .with_context(|| format!("{} as a video note", path.display()))?,
                ),
                _ => bail!("a note carries one of --image, --voice and --video"),
            };
            app.go_online().await?;
            let id = app.space(&space)?;
            let reply_to = match reply_to {
                Some(r) => Some(app.client.find_note(&r)?.note_id),
                None => None,
            };
            let pose = Pose { position: at, ..Pose::default() };
            // In a place, `--at` is in the place's frame; the stage pose, which a device not
            // aligned with the place falls back to, is the same numbers (the terminal has no
            // stage of its own).
            let place = match place {
                Some(name) => {
                    Some(PlacePose { place: app.client.find_place(&id, &name)?.id, pose })
                }
                None => None,
            };
            let draft = Draft {
                text,
                content,
                pose,
                place,
                reply_to,
                expires_in: expires,
                ..Draft::default()
            };
            let note = app.client.post(&id, draft).await?;
            if cli.json {
                println!("{}", note_json(&note, &app.place_names()?));
            } else if note.pending() {
                println!(
                    "saved {} to the outbox; it is sent when the server is reachable",
                    &note.note_id.to_hex()[..8]
                );
            } else {
                println!("posted {} (seq {})", note.note_id.to_hex(), note.seq.unwrap_or(0));
            }
        }
        Cmd::Note(NoteCmd::Get { id, out }) => {
            let _ = app.go_online().await?;
            let note = app.client.find_note(&id)?;
            let body = app.client.note_body(&note)?;
            std::fs::create_dir_all(&out)?;
            let short = &note.note_id.to_hex()[..8];
            let mut written = vec![];
            if !body.text.is_empty() {
                let p = out.join(format!("{short}.txt"));
                std::fs::write(&p, &body.text)?;
                written.push(p);
            }
            for (i, m) in body.media.iter().enumerate() {
                let cached = app.client.media(m).await?;
                let ext = match m.mime.as_str() {
                    "audio/ogg" => "ogg",
                    "video/webm" => "webm",
                    "image/jpeg" => "jpg",
                    "image/png" => "png",
                    _ => "bin",
                };
                let p = out.join(if i == 0 {
                    format!("{short}.{ext}")
                } else {
                    format!("{short}-{i}.{ext}")
                });
                std::fs::copy(cached, &p)?;
                written.push(p);
            }
            if cli.json {
                println!(
                    "{}",
                    json!({"note": note_json(&note, &app.place_names()?), "files": written})
                );
            } else {
                for p in written {
                    println!("{}", p.display());
                }
            }
        }
        Cmd::Note(NoteCmd::Delete { id }) => {
            let _ = app.go_online().await?;
            let note = app.client.find_note(&id)?;
            app.client.delete(&note.space, &note.note_id).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"deleted": note.note_id.to_hex(), "space": note.space.to_hex()})
                );
            } else {
                println!("deleted {}", &note.note_id.to_hex()[..8]);
            }
        }
        Cmd::Notes { space } => {
            app.go_online().await?;
            let id = app.space(&space)?;
            let notes = app.client.notes(&id)?;
            app.print_notes(&notes)?;
        }
        Cmd::Search { words } => {
            let notes = app.client.search(&words.join(" "))?;
            app.print_notes(&notes)?;
        }
        Cmd::Place(PlaceCmd::List { space }) => {
            app.go_online().await?;
            let id = app.space(&space)?;
            let places = app.client.places(&id)?;
            if cli.json {
                println!("{}", serde_json::Value::Array(places.iter().map(place_json).collect()));
            } else if places.is_empty() {
                println!("(no places)");
            } else {
                for p in places {
                    println!(
                        "{}  {:<20} by {:<12} marks: {}{}",
                        &p.id.to_hex()[..8],
                        p.record.name,
                        p.author,
                        cairn_client::place::mark_names(&p.record.marks),
                        if p.seq.is_none() { " (pending)" } else { "" }
                    );
                }
            }
        }
        Cmd::Place(PlaceCmd::Create { space, name, marks, description, image }) => {
            app.go_online().await?;
            let id = app.space(&space)?;
            let points: Vec<[f32; 3]> = marks.iter().map(|(_, at)| *at).collect();
            let (in_place, _) = cairn_client::place::frame_from_marks(&points)?;
            let record = PlaceRecord {
                name,
                description,
                marks: marks
                    .into_iter()
                    .zip(in_place)
                    .map(|((name, _), position)| PlaceMark { name, position })
                    .collect(),
            };
            let picture = match image {
                Some(path) => Some(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            let draft = Draft { content: Content::Place { record, picture }, ..Draft::default() };
            let note = app.client.post(&id, draft).await?;
            let place = app
                .client
                .places(&id)?
                .into_iter()
                .find(|p| p.id == note.note_id)
                .context("the new place is not in the cache")?;
            if cli.json {
                println!("{}", place_json(&place));
            } else {
                println!("made place {} ({})", place.record.name, place.id.to_hex());
            }
        }
        Cmd::Watch { space } => {
            app.online().await?;
            let id = app.space(&space)?;
            if !cli.json {
                eprintln!("watching {space}; Ctrl-C to stop");
            }
            loop {
                let Some(event) = app.client.next_event().await else {
                    bail!("the connection closed")
                };
                for change in app.client.handle_event(event).await? {
                    match change {
                        Change::Note(n) if n.space == id => {
                            let places = app.place_names()?;
                            if cli.json {
                                println!("{}", note_json(&n, &places));
                            } else {
                                println!("{}", note_line(&n, &places));
                            }
                        }
                        Change::Removed { space, note_id } if space == id => {
                            if cli.json {
                                println!("{}", json!({"removed": note_id.to_hex()}));
                            } else {
                                println!("{}  (deleted)", &note_id.to_hex()[..8]);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Cmd::Device(DeviceCmd::List { handle }) => {
            app.online().await?;
            let handle = handle.unwrap_or_else(|| app.client.handle().to_owned());
            let devices = app.client.devices(&handle).await?;
            if cli.json {
                println!("{}", serde_json::Value::Array(devices.iter().map(|d| json!({"device": d.keys.sign.to_hex(), "revoked": d.revoked, "added_by": d.added_by.map(|a| a.to_hex())})).collect()));
            } else {
                for d in devices {
                    let me = if d.keys.sign == app.client.device() { " (this device)" } else { "" };
                    println!("{}{}{me}", d.keys.sign, if d.revoked { "  revoked" } else { "" });
                }
            }
        }
        Cmd::Device(DeviceCmd::Keys) => {
            let k = app.client.identity().keys();
            let keys = format!("{}:{}", k.sign.to_hex(), k.agree.to_hex());
            if cli.json {
                println!("{}", json!({"device": k.sign.to_hex(), "keys": keys}));
            } else {
                println!("{keys}");
            }
        }
        Cmd::Device(DeviceCmd::Add { keys }) => {
            app.online().await?;
            let (sign, agree) = keys
                .split_once(':')
                .context("KEYS is SIGN:AGREE in hex, as `device keys` prints")?;
            let keys = DeviceKeys {
                sign: DeviceId::from_hex(sign).context("bad signing key")?,
                agree: cairn_proto::AgreeKey::from_hex(agree).context("bad agreement key")?,
            };
            app.client.add_device(keys).await?;
            if cli.json {
                println!("{}", json!({"added": keys.sign.to_hex()}));
            } else {
                println!("added device {}", keys.sign);
            }
        }
        Cmd::Device(DeviceCmd::Revoke { device }) => {
            app.online().await?;
            let id = DeviceId::from_hex(&device).context("a device id is 64 hex digits")?;
            app.client.revoke_device(id).await?;
            if cli.json {
                println!("{}", json!({"revoked": id.to_hex()}));
            } else {
                println!("revoked {id}");
            }
        }
        Cmd::SafetyCode { user } => {
            app.online().await?;
            let code = app.client.safety_code(&user).await?;
            if cli.json {
                println!("{}", json!({"user": user, "safety_code": code}));
            } else {
                println!("{user}: {code}");
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
