//! Where the admin API is and which token to send, kubectl-style: `--server`/`--token` flags,
//! the environment (`ACCESSHUB_API_URL`, `ACCESSHUB_TOKEN`), and named contexts in a config
//! file (`accessctl config set-context/use-context/get-contexts`).
//!
//! The file is `$ACCESSCTL_CONFIG`, else `$XDG_CONFIG_HOME/accessctl/config.yaml`, else
//! `~/.config/accessctl/config.yaml`; it holds tokens, so it is written with mode 0600 (its
//! directory 0700).
//!
//! Precedence, first wins: the flags `--server`/`--token`; the context named by `--context`;
//! the environment; the current context; the default server (`http://127.0.0.1:8086/admin/v1`,
//! what `make dev` runs).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::{
    cmd::connections::{ApiClient, DEFAULT_API_URL},
    output::{self, Format},
};

/// The flags every command takes to reach the admin API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ApiFlags {
    /// Admin API base URL, e.g. http://accesshub-admin:8080/admin/v1 (overrides the context
    /// and ACCESSHUB_API_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token of the admin API (overrides the context and ACCESSHUB_TOKEN).
    #[arg(long, global = true, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Use this context of the config file instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// One named context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// Its name.
    pub name: String,
    /// Admin API base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Every context.
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
}

impl Config {
    /// The context named `name`.
    pub fn get(&self, name: &str) -> Option<&NamedContext> {
        self.contexts.iter().find(|c| c.name == name)
    }
}

/// Where the config file is (see the module docs).
pub fn config_path() -> anyhow::Result<PathBuf> {
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(p) = non_empty("ACCESSCTL_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match non_empty("XDG_CONFIG_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(
            non_empty("HOME").ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?,
        )
        .join(".config"),
    };
    Ok(base.join("accessctl").join("config.yaml"))
}

/// Reads the config file; a missing file is an empty config.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Config::default()),
        Ok(text) => yaml_serde::from_str(&text)
            .with_context(|| format!("reading accessctl config {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("reading accessctl config {}", path.display())),
    }
}

/// Writes the config file with mode 0600 (directory 0700), atomically (temp file + rename).
pub fn save(path: &Path, config: &Config) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = yaml_serde::to_string(config)?;
    let tmp = dir.join(format!(".config.yaml.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        // Only tighten a directory we may have just created under the user's config home.
        if dir.ends_with("accessctl") {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The admin API to talk to, and where that was decided (for error messages).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL.
    pub server: String,
    /// Bearer token, if any was given anywhere.
    pub token: Option<String>,
    /// `flag`, `context NAME`, `environment` or `default`, for the server.
    pub from: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .finish()
    }
}

impl Target {
    /// A client for this target; without a token, says every way to give one.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let token = self.token.as_deref().ok_or_else(|| {
            anyhow!(
                "no admin API token: pass --token, set ACCESSHUB_TOKEN, or store one in a \
                 context (accessctl config set-context NAME --server URL --token TOKEN)"
            )
        })?;
        ApiClient::new(&self.server, token)
    }
}

/// Resolves flags, environment and config file (see the module docs for the precedence).
pub fn resolve(flags: &ApiFlags, config: &Config) -> anyhow::Result<Target> {
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let named = match &flags.context {
        Some(name) => Some(config.get(name).ok_or_else(|| {
            anyhow!("no context {name:?} in the accessctl config (accessctl config get-contexts)")
        })?),
        None => None,
    };
    let current = match (&flags.context, &config.current_context) {
        (None, Some(name)) => Some(config.get(name).ok_or_else(|| {
            anyhow!(
                "the current context {name:?} is not in the accessctl config \
                 (accessctl config use-context NAME)"
            )
        })?),
        _ => None,
    };
    let (server, from) = if let Some(s) = &flags.server {
        (s.clone(), "flag --server".to_owned())
    } else if let Some(s) = named.and_then(|c| c.server.clone()) {
        (s, format!("context {:?}", named.map_or("", |c| &c.name)))
    } else if let Some(s) = env("ACCESSHUB_API_URL") {
        (s, "environment ACCESSHUB_API_URL".to_owned())
    } else if let Some(s) = current.and_then(|c| c.server.clone()) {
        (s, format!("context {:?}", current.map_or("", |c| &c.name)))
    } else {
        (DEFAULT_API_URL.to_owned(), "default".to_owned())
    };
    let token = flags
        .token
        .clone()
        .or_else(|| named.and_then(|c| c.token.clone()))
        .or_else(|| env("ACCESSHUB_TOKEN"))
        .or_else(|| current.and_then(|c| c.token.clone()));
    Ok(Target {
        server,
        token,
        from,
    })
}

/// Reads the config file and resolves (what every admin API command does first).
pub fn target(flags: &ApiFlags) -> anyhow::Result<Target> {
    resolve(flags, &load(&config_path()?)?)
}

/// `accessctl config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Create or update a context from the global --server and --token (only what is given
    /// changes; the token is stored in the file, mode 0600).
    SetContext {
        /// Context name.
        name: String,
        /// Also make it the current context.
        #[arg(long)]
        use_it: bool,
    },
    /// Make a context the current one.
    UseContext {
        /// Context name.
        name: String,
    },
    /// List the contexts (`*` marks the current one; tokens are not shown).
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Remove a context.
    DeleteContext {
        /// Context name.
        name: String,
    },
    /// Print where the config file is.
    Path,
}

/// A context as listed (without its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextRow {
    /// Whether it is the current one.
    pub current: bool,
    /// Name.
    pub name: String,
    /// Server.
    pub server: Option<String>,
    /// Whether a token is stored.
    pub has_token: bool,
}

/// Runs `accessctl config …` against the file at `path`; `set-context` stores `flags`.
pub fn run_at(
    path: &Path,
    cmd: ConfigCommand,
    flags: &ApiFlags,
    format: Format,
) -> anyhow::Result<()> {
    let mut config = load(path)?;
    match cmd {
        ConfigCommand::SetContext { name, use_it } => {
            let (ctx_server, ctx_token) = (flags.server.clone(), flags.token.clone());
            if name.trim().is_empty() {
                bail!("a context needs a name");
            }
            if let Some(s) = &ctx_server {
                reqwest::Url::parse(s).with_context(|| format!("--server {s:?} is not a URL"))?;
            }
            let existed = config.get(&name).is_some();
            if !existed {
                config.contexts.push(NamedContext {
                    name: name.clone(),
                    server: None,
                    token: None,
                });
            }
            if let Some(c) = config.contexts.iter_mut().find(|c| c.name == name) {
                if ctx_server.is_some() {
                    c.server = ctx_server;
                }
                if ctx_token.is_some() {
                    c.token = ctx_token;
                }
            }
            if use_it || config.current_context.is_none() {
                config.current_context = Some(name.clone());
            }
            save(path, &config)?;
            let verb = if existed { "modified" } else { "created" };
            eprintln!("context {name:?} {verb} in {}", path.display());
        }
        ConfigCommand::UseContext { name } => {
            if config.get(&name).is_none() {
                bail!("no context {name:?} (accessctl config get-contexts)");
            }
            config.current_context = Some(name.clone());
            save(path, &config)?;
            eprintln!("switched to context {name:?}");
        }
        ConfigCommand::GetContexts => {
            let rows: Vec<ContextRow> = config
                .contexts
                .iter()
                .map(|c| ContextRow {
                    current: config.current_context.as_deref() == Some(c.name.as_str()),
                    name: c.name.clone(),
                    server: c.server.clone(),
                    has_token: c.token.is_some(),
                })
                .collect();
            let table = rows
                .iter()
                .map(|r| {
                    vec![
                        if r.current { "*" } else { "" }.to_owned(),
                        r.name.clone(),
                        r.server.clone().unwrap_or_default(),
                        if r.has_token { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            output::print(
                format,
                &rows,
                &["CURRENT", "NAME", "SERVER", "TOKEN"],
                table,
            )?;
        }
        ConfigCommand::CurrentContext => match &config.current_context {
            Some(name) => println!("{name}"),
            None => bail!("no current context (accessctl config use-context NAME)"),
        },
        ConfigCommand::DeleteContext { name } => {
            let before = config.contexts.len();
            config.contexts.retain(|c| c.name != name);
            if config.contexts.len() == before {
                bail!("no context {name:?}");
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            save(path, &config)?;
            eprintln!("deleted context {name:?}");
        }
        ConfigCommand::Path => println!("{}", path.display()),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(name: &str, server: &str, token: &str) -> NamedContext {
        NamedContext {
            name: name.into(),
            server: Some(server.into()),
            token: Some(token.into()),
        }
    }

    #[test]
    fn flags_beat_a_named_context_which_beats_the_current_one() {
        let config = Config {
            current_context: Some("dev".into()),
            contexts: vec![
                ctx("dev", "http://dev/admin/v1", "d"),
                ctx("prod", "http://prod/admin/v1", "p"),
            ],
        };
        let none = ApiFlags::default();
        // ACCESSHUB_API_URL / ACCESSHUB_TOKEN are not set in unit tests' environment unless
        // the developer exported them: only assert what does not depend on them.
        let named = resolve(
            &ApiFlags {
                context: Some("prod".into()),
                ..none.clone()
            },
            &config,
        )
        .unwrap();
        assert_eq!(
            (named.server.as_str(), named.token.as_deref()),
            ("http://prod/admin/v1", Some("p"))
        );
        let flagged = resolve(
            &ApiFlags {
                server: Some("http://x/admin/v1".into()),
                token: Some("t".into()),
                context: Some("prod".into()),
            },
            &config,
        )
        .unwrap();
        assert_eq!(
            (flagged.server.as_str(), flagged.token.as_deref()),
            ("http://x/admin/v1", Some("t"))
        );
        assert!(
            resolve(
                &ApiFlags {
                    context: Some("nope".into()),
                    ..none
                },
                &config
            )
            .is_err()
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let t = Target {
            server: "s".into(),
            token: Some("secret-token".into()),
            from: "flag".into(),
        };
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}
