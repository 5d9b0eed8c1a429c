//! `accesshub-nats-config`: renders deploy/nats/permissions.yaml for a NATS server.
//!
//!   accesshub-nats-config users                       # user names, one a line
//!   accesshub-nats-config server --listen 127.0.0.1:4223 --store-dir DIR \
//!       --passwords FILE [--upstream USER:TENANT[:SOURCE]]... [--tls-cert C --tls-key K]
//!   accesshub-nats-config helm-values [--upstream ...] [--check FILE]
//!   accesshub-nats-config server ... --edge USER:TENANT:SITE... \
//!       --leafnodes-listen 0.0.0.0:7422 --leaf-tls-cert C --leaf-tls-key K  # hotels dial in
//!   accesshub-nats-config edge-leaf --hub tls://nats.example:7422 --edge USER:TENANT:SITE \
//!       --password-file F [--tls-ca CA]                         # a hotel's nats-server.conf

use std::{collections::BTreeMap, process::ExitCode};

use accesshub_natsauth::edge::{
    EdgeBinding, LeafOptions, LeafTls, edge_identity, hub_leafnodes, leaf_config,
};
use accesshub_natsauth::{
    ServerOptions, Tls, UpstreamBinding, helm_values, identities, server_config, upstream_identity,
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Render accesshub's NATS identities (deploy/nats/permissions.yaml)")]
struct Cli {
    /// Subject/stream namespace (ACCESSHUB_NAMESPACE; empty in production).
    #[arg(long, default_value = "", global = true)]
    namespace: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the service identities' user names.
    Users,
    /// Print a complete nats-server configuration (JetStream + authorization).
    Server {
        /// host:port of the client listener.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        /// JetStream store directory.
        #[arg(long)]
        store_dir: String,
        /// File of `user=password` lines (every service user and every upstream).
        #[arg(long)]
        passwords: String,
        /// Tenant-bound upstream identity, USER:TENANT[:SOURCE] (repeatable).
        #[arg(long)]
        upstream: Vec<UpstreamBinding>,
        /// TLS server certificate (PEM); with --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<String>,
        /// TLS server key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<String>,
        /// CA for client certificates (enables verify).
        #[arg(long, requires = "tls_cert")]
        tls_ca: Option<String>,
        /// A hotel's leaf-node user, USER:TENANT:SITE (repeatable; docs/deploy.md
        /// "On-premises lock servers").
        #[arg(long)]
        edge: Vec<EdgeBinding>,
        /// host:port hotels' leaf nodes dial in to (with --edge).
        #[arg(long, requires_all = ["leaf_tls_cert", "leaf_tls_key"])]
        leafnodes_listen: Option<String>,
        /// TLS certificate of the leaf-node port (PEM).
        #[arg(long)]
        leaf_tls_cert: Option<String>,
        /// Its key (PEM).
        #[arg(long)]
        leaf_tls_key: Option<String>,
    },
    /// Print values for the official NATS chart (deploy/nats/values-nats.yaml).
    HelmValues {
        /// Tenant-bound upstream identity, USER:TENANT[:SOURCE] (repeatable).
        #[arg(long)]
        upstream: Vec<UpstreamBinding>,
        /// Compare with FILE instead of printing; exit 1 when it differs.
        #[arg(long)]
        check: Option<String>,
    },
    /// Print a hotel's nats-server configuration: loopback listener, one TLS remote.
    EdgeLeaf {
        /// The cluster's leaf-node URL.
        #[arg(long)]
        hub: String,
        /// The hotel's leaf user, USER:TENANT:SITE.
        #[arg(long)]
        edge: EdgeBinding,
        /// File holding the leaf user's password.
        #[arg(long)]
        password_file: String,
        /// Local listener for the relay.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        /// CA that signed the cluster's leaf-node certificate (PEM).
        #[arg(long)]
        tls_ca: Option<String>,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    let ids = identities(&cli.namespace).map_err(|e| e.to_string())?;
    let ups = |bs: &[UpstreamBinding]| {
        bs.iter()
            .map(|b| upstream_identity(b, &cli.namespace))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    };
    match cli.cmd {
        Cmd::Users => {
            for id in ids {
                println!("{}", id.user);
            }
        }
        Cmd::Server {
            listen,
            store_dir,
            passwords,
            upstream,
            tls_cert,
            tls_key,
            tls_ca,
            edge,
            leafnodes_listen,
            leaf_tls_cert,
            leaf_tls_key,
        } => {
            let pw = read_passwords(&passwords)?;
            let mut all = ids;
            all.extend(ups(&upstream)?);
            for b in &edge {
                all.push(edge_identity(b, &cli.namespace).map_err(|e| e.to_string())?);
            }
            let tls = match (tls_cert, tls_key) {
                (Some(cert_file), Some(key_file)) => Some(Tls {
                    cert_file,
                    key_file,
                    ca_file: tls_ca,
                }),
                _ => None,
            };
            let conf = server_config(
                &all,
                |u| pw.get(u).cloned(),
                &ServerOptions {
                    listen,
                    store_dir,
                    tls,
                },
            )
            .map_err(|e| e.to_string())?;
            print!("{conf}");
            if let Some(listen) = leafnodes_listen {
                let tls = LeafTls {
                    cert_file: leaf_tls_cert,
                    key_file: leaf_tls_key,
                    ca_file: None,
                };
                print!("{}", hub_leafnodes(&listen, &tls));
            }
        }
        Cmd::EdgeLeaf {
            hub,
            edge,
            password_file,
            listen,
            tls_ca,
        } => {
            let password = std::fs::read_to_string(&password_file)
                .map_err(|e| format!("{password_file}: {e}"))?
                .trim()
                .to_owned();
            print!(
                "{}",
                leaf_config(&LeafOptions {
                    listen,
                    hub_url: hub,
                    user: edge.user,
                    password,
                    tls: LeafTls {
                        ca_file: tls_ca,
                        ..LeafTls::default()
                    },
                })
            );
        }
        Cmd::HelmValues { upstream, check } => {
            let out = helm_values(&ids, &ups(&upstream)?);
            match check {
                Some(f) => {
                    let committed = std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?;
                    if committed != out {
                        return Err(format!("{f} is stale: run `make nats-config`"));
                    }
                }
                None => print!("{out}"),
            }
        }
    }
    Ok(())
}

/// `user=password` lines.
fn read_passwords(path: &str) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(u, p)| (u.trim().to_owned(), p.trim().to_owned()))
        .collect())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accesshub-nats-config: {e}");
            ExitCode::FAILURE
        }
    }
}
