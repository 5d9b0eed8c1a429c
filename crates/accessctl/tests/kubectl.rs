//! accessctl as kubectl users expect it (issue 24, item 6): `--server/--token`, named contexts
//! in a 0600 config file, shell completions, one argument order, documented exit codes. The
//! real binary against the admin service in-process, real Postgres and NATS.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use accessctl::{
    Cli, Command as Sub,
    cmd::{lookup, sync::SyncCommand},
    context::{self, ApiFlags, ConfigCommand},
    exit,
    output::Format,
};
use accesshub_admin::{AdminConfig, service};
use accesshub_store::SecretBox;
use clap::Parser as _;

const BOOT: &str = "accessctl-kubectl-test-admin-token";

/// The binary with a config file of its own and no admin API settings from the environment.
fn accessctl(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_accessctl"))
        .args(args)
        .env("ACCESSCTL_CONFIG", config)
        .env_remove("ACCESSHUB_API_URL")
        .env_remove("ACCESSHUB_TOKEN")
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn contexts_are_stored_0600_and_listed_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accessctl").join("config.yaml");
    let set = |name: &str, server: &str, token: &str| {
        let cmd = ConfigCommand::SetContext {
            name: name.into(),
            use_it: false,
        };
        let flags = ApiFlags {
            server: Some(server.into()),
            token: Some(token.into()),
            context: None,
        };
        context::run_at(&path, cmd, &flags, Format::Table)
    };
    let use_context = |name: &str| {
        let cmd = ConfigCommand::UseContext { name: name.into() };
        context::run_at(&path, cmd, &ApiFlags::default(), Format::Table)
    };
    set("dev", "http://127.0.0.1:8086/admin/v1", "dev-token").unwrap();
    set("prod", "http://admin.prod:8080/admin/v1", "prod-token").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "config file mode {mode:o}");
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700, "config dir mode {dmode:o}");
    }
    let config = context::load(&path).unwrap();
    // The first context set becomes the current one.
    assert_eq!(config.current_context.as_deref(), Some("dev"));
    use_context("prod").unwrap();
    let config = context::load(&path).unwrap();
    assert_eq!(config.current_context.as_deref(), Some("prod"));
    let t = context::resolve(&ApiFlags::default(), &config).unwrap();
    if std::env::var_os("ACCESSHUB_API_URL").is_none() {
        assert_eq!(t.server, "http://admin.prod:8080/admin/v1");
    }
    assert!(use_context("nope").is_err());

    // get-contexts: the current one marked, no token printed.
    let out = accessctl(&path, &["config", "get-contexts", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[1]["name"], "prod");
    assert_eq!(rows[1]["current"], true);
    assert_eq!(rows[1]["has_token"], true);
    assert!(!text(&out).contains("prod-token"));
    let out = accessctl(&path, &["config", "current-context"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "prod");
}

#[test]
fn completions_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    for shell in ["bash", "zsh", "fish"] {
        let out = accessctl(&cfg, &["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("accessctl") && script.contains("use-context"),
            "{shell}"
        );
    }
}

#[test]
fn one_argument_order_tenant_then_vendor() {
    let parse = |args: &[&str]| Cli::try_parse_from([&["accessctl"], args].concat()).unwrap();
    let Sub::Lookup(a) = parse(&["lookup", "acme", "cloudpass", "sites"]).command else {
        panic!("lookup")
    };
    assert_eq!(
        lookup::tenant_and_vendor(&a.tenant, &a.vendor).unwrap(),
        ("acme".to_owned(), accesshub_connections::Vendor::Cloudpass)
    );
    // The old order still works (with a warning on stderr).
    assert_eq!(
        lookup::tenant_and_vendor("cloudpass", "acme").unwrap(),
        ("acme".to_owned(), accesshub_connections::Vendor::Cloudpass)
    );
    for args in [
        &["sync", "run", "acme", "tapkey", "--wait"][..],
        &[
            "sync", "run", "--tenant", "acme", "--vendor", "tapkey", "--wait",
        ][..],
    ] {
        let Sub::Sync(SyncCommand::Run { conn, .. }) = parse(args).command else {
            panic!("sync run")
        };
        let named = |pos: &Option<String>, flag: &Option<String>| pos.clone().or(flag.clone());
        assert_eq!(
            named(&conn.tenant, &conn.tenant_flag).as_deref(),
            Some("acme")
        );
        assert_eq!(
            named(&conn.vendor, &conn.vendor_flag).as_deref(),
            Some("tapkey")
        );
    }
    // Global flags anywhere, like kubectl.
    let cli = parse(&[
        "connections",
        "list",
        "--server",
        "http://x/admin/v1",
        "-o",
        "yaml",
    ]);
    assert_eq!(cli.api.server.as_deref(), Some("http://x/admin/v1"));
    assert_eq!(cli.output, Format::Yaml);
    // The conventions and exit codes are in --help.
    let help = Cli::try_parse_from(["accessctl", "--help"])
        .unwrap_err()
        .to_string();
    assert!(
        help.contains("Exit codes") && help.contains("TENANT, then VENDOR"),
        "{help}"
    );
}

#[tokio::test]
async fn server_and_token_flags_contexts_and_exit_codes() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let cfg = service::ServiceConfig::for_test(
        bus.config(service::SERVICE, &db.url),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            ..Default::default()
        },
    );
    let admin = service::start(cfg).await.unwrap();
    let server = format!("http://{}/admin/v1", admin.addr());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let run = |args: Vec<String>| {
        let path = path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                accessctl(&path, &args)
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // --server/--token flags.
    let out = run(s(&[
        "--server", &server, "--token", BOOT, "tenants", "create", "acme",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    // No token anywhere: exit 1 saying how to give one.
    let out = run(s(&["--server", &server, "tenants", "list"])).await;
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::FAILED)),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--token"), "{}", text(&out));
    // A wrong token: exit 1 with the problem's detail.
    let out = run(s(&[
        "--server", &server, "--token", "wrong", "tenants", "list",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    // Wrong usage: 2.
    let out = run(s(&["tenants", "frobnicate"])).await;
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::USAGE)),
        "{}",
        text(&out)
    );

    // A context carries both; --context picks one that is not current.
    let out = run(s(&[
        "config",
        "set-context",
        "local",
        "--server",
        &server,
        "--token",
        BOOT,
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(s(&[
        "config",
        "set-context",
        "other",
        "--server",
        "http://127.0.0.1:9/admin/v1",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    for args in [
        s(&["tenants", "list", "-o", "json"]),
        s(&["--context", "local", "tenants", "list", "-o", "json"]),
    ] {
        let out = run(args).await;
        assert!(out.status.success(), "{}", text(&out));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list[0]["id"], "acme");
    }
    let out = run(s(&["--context", "other", "tenants", "list"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // status: through the admin API (the context's server, which runs on the test's
    // namespace) healthy (exit 0); with --direct (break-glass, NATS and Postgres of its own)
    // healthy on the test's namespace, unhealthy where no stream exists (4).
    let ns = bus.config("accessctl", &db.url).namespace;
    for (args, namespace, want) in [
        (&["status"][..], format!("{ns}-nothing"), exit::OK),
        (&["status", "--direct"][..], ns.clone(), exit::OK),
        (
            &["status", "--direct"][..],
            format!("{ns}-nothing"),
            exit::UNHEALTHY,
        ),
    ] {
        let url = db.url.clone();
        let path = path.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_accessctl"))
                .args(args)
                .env("ACCESSCTL_CONFIG", &path)
                .env("DATABASE_URL", &url)
                .env("ACCESSHUB_NAMESPACE", &namespace)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(i32::from(want)), "{}", text(&out));
    }

    admin.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}

/// Shell-like words: whitespace-separated, "…" and '…' quoted.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                started = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Every `accessctl …` command in a code block of the docs and runbooks parses with today's
/// CLI (placeholders like `<ID>` filled in), so the documented argument order is the real one.
#[test]
fn every_documented_command_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "docs/runbooks"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    let placeholder = |s: &str| {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            match rest[i..].find('>') {
                Some(j) => {
                    out.push('1');
                    rest = &rest[i + j + 1..];
                }
                None => {
                    rest = &rest[i..];
                    break;
                }
            }
        }
        out.push_str(rest);
        out
    };
    let (mut checked, mut failures) = (0, Vec::new());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut in_block = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            let Some(at) = line.find("accessctl ") else {
                continue;
            };
            if !in_block || line.trim_start().starts_with('#') || line.contains("\"$@\"") {
                continue;
            }
            let cmd = line[at..]
                .split(" #")
                .next()
                .unwrap()
                .split(" | ")
                .next()
                .unwrap();
            // `[--all]`: an optional part, shown as such.
            let args: Vec<String> = words(&placeholder(cmd))
                .into_iter()
                .filter(|w| !w.starts_with('['))
                .collect();
            checked += 1;
            if let Err(e) = Cli::try_parse_from(&args) {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                failures.push(format!("{}:{}: {cmd}: {first}", f.display(), n + 1));
            }
        }
    }
    assert!(checked >= 60, "only {checked} documented commands found");
    assert!(
        failures.is_empty(),
        "documented commands that do not parse:\n{}",
        failures.join("\n")
    );
}
