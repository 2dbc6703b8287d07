//! Where a profile lives: `--home DIR`, else `CAIRN_HOME`, else the platform's data
//! directory (`~/.local/share/cairn` on Linux).

use std::path::PathBuf;

pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CAIRN_HOME") {
        return PathBuf::from(home);
    }
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("cairn")
}
