//! Process harness for whole-system tests: starts the real accesshub binaries, and — for chaos
//! tests — private nats-server and PostgreSQL instances on their own ports, so killing them
//! never disturbs the machine's shared services or other tests.
//!
//! Binaries are taken from the workspace target directory (`make test` builds them first).

pub mod contract;
pub mod otlp;

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Something the harness could not do; tests fail with this message.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary is not built.
    #[error("binary {0} not found in {1}: run `cargo build --workspace --bins` (make test does)")]
    MissingBinary(String, String),
    /// Spawning failed.
    #[error("spawn {0}: {1}")]
    Spawn(String, std::io::Error),
    /// It did not become ready in time.
    #[error("{0} not ready after {1:?}")]
    NotReady(String, Duration),
    /// A setup command failed.
    #[error("{0}")]
    Setup(String),
}

/// A free TCP port on loopback (the OS picks; tiny race accepted in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Whether something listens on `port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Waits until `port` accepts connections.
pub fn wait_port(name: &str, port: u16, timeout: Duration) -> Result<(), HarnessError> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if port_open(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(HarnessError::NotReady(name.to_owned(), timeout))
}

/// The workspace's target profile directory holding the binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ACCESSHUB_BIN_DIR") {
        return PathBuf::from(d);
    }
    // Test executables live in target/<profile>/deps.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// Path of a workspace binary.
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    let p = bin_dir().join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(HarnessError::MissingBinary(
            name.to_owned(),
            bin_dir().display().to_string(),
        ))
    }
}

fn unique_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("accesshub-{tag}-{}", uuid::Uuid::new_v4().simple()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// A server's directory (JetStream store, configuration), removed when dropped: a soak of
/// thousands of histories must not leave thousands of stores in /tmp. Held after the server's
/// process in its struct, so the process is killed first.
fn server_dir(tag: &str) -> Result<tempfile::TempDir, HarnessError> {
    tempfile::Builder::new()
        .prefix(&format!("accesshub-{tag}-"))
        .tempdir()
        .map_err(|e| HarnessError::Setup(format!("{tag} directory: {e}")))
}

/// A throwaway PKI for TLS tests, made with the `openssl` CLI: a CA, a server certificate for
/// `127.0.0.1` / `localhost` signed by it, and a client certificate signed by it. PEM files in
/// a fresh directory; EC P-256 keys in PKCS#8.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA's certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// Key of `server_cert`.
    pub server_key: PathBuf,
    /// A client certificate (CN `accesshub-client`) and key.
    pub client_cert: PathBuf,
    /// Key of `client_cert`.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates it (a second or two); fails when `openssl` is not installed.
    pub fn generate() -> Result<TestPki, HarnessError> {
        let dir = unique_dir("pki");
        let f = |n: &str| dir.join(n).display().to_string();
        let run = |args: &[&str]| -> Result<(), HarnessError> {
            let out = Command::new("openssl").args(args).output().map_err(|e| {
                HarnessError::Setup(format!("openssl (apt-get install openssl): {e}"))
            })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(HarnessError::Setup(format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                )))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let (ca, ca_key) = (f("ca.pem"), f("ca.key"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            "/CN=accesshub-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&args)?;
        for (name, cn, ext) in [
            (
                "server",
                "127.0.0.1",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
            ),
            ("client", "accesshub-client", "extendedKeyUsage=clientAuth"),
        ] {
            let (key, csr, pem, extfile) = (
                f(&format!("{name}.key")),
                f(&format!("{name}.csr")),
                f(&format!("{name}.pem")),
                f(&format!("{name}.ext")),
            );
            std::fs::write(
                &extfile,
                format!(
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{}\n",
                    ext
                ),
            )
            .map_err(|e| HarnessError::Setup(format!("{extfile}: {e}")))?;
            let subj = format!("/CN={cn}");
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            run(&args)?;
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ])?;
        }
        Ok(TestPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        })
    }
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// Name for messages.
    pub name: String,
    child: Option<Child>,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `bin` with `env`, logging to a file in the temp dir.
    pub fn spawn(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> Result<Proc, HarnessError> {
        let log = std::env::temp_dir().join(format!(
            "accesshub-{name}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut p = Proc {
            name: name.to_owned(),
            child: None,
            cmd: std::iter::once(bin.display().to_string())
                .chain(args.iter().map(|s| (*s).to_owned()))
                .collect(),
            env: env.to_vec(),
            log,
        };
        p.start()?;
        Ok(p)
    }

    /// Sends signal `name` (`STOP`, `CONT`, …) with kill(1).
    pub fn signal(&self, name: &str) -> Result<(), HarnessError> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| HarnessError::Setup(format!("{}: not running", self.name)))?;
        let st = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .map_err(|e| HarnessError::Setup(format!("kill -{name}: {e}")))?;
        if st.success() {
            Ok(())
        } else {
            Err(HarnessError::Setup(format!("kill -{name} {pid} failed")))
        }
    }

    /// (Re)starts the process with the same command and environment.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::Spawn(self.name.clone(), e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::Spawn(self.name.clone(), e))?;
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..])
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.child = Some(
            c.spawn()
                .map_err(|e| HarnessError::Spawn(self.name.clone(), e))?,
        );
        Ok(())
    }

    /// SIGKILL: no chance to drain (crash simulation).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (graceful shutdown), SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            // `unsafe` is forbidden in this workspace, so signal through the `kill` command.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < grace {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its process id while it runs (benchmarks read its memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        // Read through `log()` while the process is of interest; afterwards it is litter.
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A private nats-server with JetStream on its own port and store directory.
#[derive(Debug)]
pub struct PrivateNats {
    /// Port.
    pub port: u16,
    /// Password of every NATS user (empty: the server requires no authentication).
    pub passwords: BTreeMap<String, String>,
    /// Whether clients must speak TLS (`tls://` URLs).
    pub tls: bool,
    proc: Proc,
    /// Removed with the server (kept for its `Drop`).
    _dir: tempfile::TempDir,
}

fn nats_server_bin() -> Result<PathBuf, HarnessError> {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            HarnessError::Setup(
                "nats-server not installed (deploy/dev-services.sh installs it)".into(),
            )
        })
}

impl PrivateNats {
    /// Starts it (no authentication) and waits for the port.
    pub fn start() -> Result<PrivateNats, HarnessError> {
        let bin = nats_server_bin()?;
        let port = free_port();
        let dir = server_dir("nats")?;
        let port_s = port.to_string();
        let dir_s = dir.path().display().to_string();
        let proc = Proc::spawn(
            "nats-server",
            &bin,
            &["-a", "127.0.0.1", "-p", &port_s, "-js", "-sd", &dir_s],
            &[],
        )?;
        wait_port("nats-server", port, Duration::from_secs(10))?;
        Ok(PrivateNats {
            port,
            passwords: BTreeMap::new(),
            tls: false,
            proc,
            _dir: dir,
        })
    }

    /// Starts it with the configuration `make dev` and production use: one user per
    /// accesshub identity with the permissions of deploy/nats/permissions.yaml (rendered for
    /// `namespace`), plus tenant-bound upstream users (`USER:TENANT[:SOURCE]`). Random passwords.
    pub fn start_authorized(
        namespace: &str,
        upstreams: &[&str],
    ) -> Result<PrivateNats, HarnessError> {
        Self::start_authorized_with(namespace, upstreams, None)
    }

    /// [`PrivateNats::start_authorized`] with TLS on the client port, as
    /// `accesshub-nats-config server --tls-cert --tls-key [--tls-ca]` renders it.
    pub fn start_authorized_with(
        namespace: &str,
        upstreams: &[&str],
        tls: Option<accesshub_natsauth::Tls>,
    ) -> Result<PrivateNats, HarnessError> {
        let with_tls = tls.is_some();
        let setup = |e: accesshub_natsauth::NatsAuthError| HarnessError::Setup(e.to_string());
        let mut ids = accesshub_natsauth::identities(namespace).map_err(setup)?;
        for u in upstreams {
            let b: accesshub_natsauth::UpstreamBinding = u.parse().map_err(setup)?;
            ids.push(accesshub_natsauth::upstream_identity(&b, namespace).map_err(setup)?);
        }
        let passwords: BTreeMap<String, String> = ids
            .iter()
            .map(|i| (i.user.clone(), uuid::Uuid::new_v4().simple().to_string()))
            .collect();
        let bin = nats_server_bin()?;
        let port = free_port();
        let dir = server_dir("nats")?;
        let conf = accesshub_natsauth::server_config(
            &ids,
            |u| passwords.get(u).cloned(),
            &accesshub_natsauth::ServerOptions {
                listen: format!("127.0.0.1:{port}"),
                store_dir: dir.path().join("js").display().to_string(),
                tls,
            },
        )
        .map_err(setup)?;
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, conf).map_err(|e| HarnessError::Setup(e.to_string()))?;
        let conf_s = conf_path.display().to_string();
        let proc = Proc::spawn("nats-server", &bin, &["-c", &conf_s], &[])?;
        wait_port("nats-server", port, Duration::from_secs(10))?;
        Ok(PrivateNats {
            port,
            passwords,
            tls: with_tls,
            proc,
            _dir: dir,
        })
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// `nats://127.0.0.1:<port>` (`tls://` when the server requires TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Hard stop (data on disk stays).
    pub fn kill(&mut self) {
        self.proc.kill9();
    }

    /// Start again on the same port and store.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.proc.start()?;
        wait_port("nats-server", self.port, Duration::from_secs(10))
    }
}

/// A private PostgreSQL cluster (initdb in a temp dir, own port, trust auth), run as the
/// `postgres` OS user when the tests run as root (PostgreSQL refuses to run as root).
#[derive(Debug)]
pub struct PrivatePostgres {
    /// Port.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn pg_bin_dir() -> Option<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(base)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions.pop().map(|v| v.join("bin"))
}

fn as_postgres(cmd: &str) -> Command {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    }
}

impl PrivatePostgres {
    /// initdb + start; waits for the port.
    pub fn start() -> Result<PrivatePostgres, HarnessError> {
        let bin = pg_bin_dir().ok_or_else(|| {
            HarnessError::Setup("PostgreSQL server binaries not installed".into())
        })?;
        let dir =
            std::env::temp_dir().join(format!("accesshub-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::Setup(e.to_string()))?;
        let _ = Command::new("chown")
            .args(["postgres:postgres", &dir.display().to_string()])
            .status();
        let init = as_postgres(&format!(
            "{}/initdb -D {} -U postgres --auth=trust -E UTF8 >/dev/null",
            bin.display(),
            dir.display()
        ))
        .status()
        .map_err(|e| HarnessError::Setup(format!("initdb: {e}")))?;
        if !init.success() {
            return Err(HarnessError::Setup("initdb failed".into()));
        }
        let pg = PrivatePostgres {
            port: free_port(),
            dir,
            bin,
        };
        pg.start_server()?;
        Ok(pg)
    }

    fn start_server(&self) -> Result<(), HarnessError> {
        let st = as_postgres(&format!(
            "{}/pg_ctl -D {} -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' -l {}/log start -w >/dev/null",
            self.bin.display(),
            self.dir.display(),
            self.port,
            self.dir.display(),
            self.dir.display()
        ))
        .status()
        .map_err(|e| HarnessError::Setup(format!("pg_ctl: {e}")))?;
        if !st.success() {
            return Err(HarnessError::Setup("pg_ctl start failed".into()));
        }
        wait_port("postgres", self.port, Duration::from_secs(20))
    }

    /// URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Fast shutdown (like a crash from the clients' point of view) and start again.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.restart_after(Duration::ZERO)
    }

    /// Immediate shutdown, `down` without a server, then start again: an outage clients notice.
    pub fn restart_after(&self, down: Duration) -> Result<(), HarnessError> {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {} -m immediate stop >/dev/null",
            self.bin.display(),
            self.dir.display()
        ))
        .status();
        std::thread::sleep(down);
        self.start_server()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {} -m immediate stop >/dev/null 2>&1",
            self.bin.display(),
            self.dir.display()
        ))
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A private 3-node nats-server cluster on loopback: client and route ports of its own,
/// JetStream with file storage in a distinct store directory per node, so streams can be R3
/// and a node can be killed (SIGKILL) and restarted like a crashed pod.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, `n1`..`n3`.
    pub nodes: Vec<ClusterNode>,
    /// Removed with the server (kept for its `Drop`).
    _dir: tempfile::TempDir,
}

/// One node of a [`NatsCluster`].
#[derive(Debug)]
pub struct ClusterNode {
    /// `server_name` (what `$JS.API.STREAM.INFO` reports as `cluster.leader`).
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Cluster route port.
    pub route_port: u16,
    proc: Proc,
}

impl ClusterNode {
    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL (its store stays on disk).
    pub fn kill(&mut self) {
        self.proc.kill9();
    }

    /// Starts it again with the same name, ports and store.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.proc.start()?;
        wait_port(&self.name, self.port, Duration::from_secs(10))
    }

    /// Whether its process runs.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// SIGSTOP: the process stays, its sockets stay open, and it answers nothing (a node
    /// frozen by a stalled disk or a paused VM), until [`ClusterNode::resume`].
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.proc.signal("STOP")
    }

    /// SIGCONT after [`ClusterNode::pause`].
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.proc.signal("CONT")
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// The configuration file of cluster node `name` (nats-server 2.9 syntax, as Debian ships).
pub fn cluster_node_config(
    name: &str,
    port: u16,
    route_port: u16,
    all_route_ports: &[u16],
    store_dir: &Path,
) -> String {
    let routes: Vec<String> = all_route_ports
        .iter()
        .filter(|p| **p != route_port)
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect();
    format!(
        "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
         jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
         cluster {{\n  name: accesshub-e2e\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n",
        store = store_dir.display().to_string(),
        routes = routes.join(", "),
    )
}

impl NatsCluster {
    /// Starts three nodes and waits for their client ports (JetStream's meta leader is
    /// elected a moment later: callers wait for `$JS.API.INFO` to answer).
    pub fn start() -> Result<NatsCluster, HarnessError> {
        let bin = nats_server_bin()?;
        let dir = server_dir("nats-cluster")?;
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let route_ports: Vec<u16> = ports.iter().map(|p| p.1).collect();
        let mut nodes = Vec::new();
        for (i, (port, route_port)) in ports.iter().copied().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &conf,
                cluster_node_config(&name, port, route_port, &route_ports, &store),
            )
            .map_err(|e| HarnessError::Setup(format!("{}: {e}", conf.display())))?;
            let conf_s = conf.display().to_string();
            let proc = Proc::spawn(&format!("nats-{name}"), &bin, &["-c", &conf_s], &[])?;
            nodes.push(ClusterNode {
                name,
                port,
                route_port,
                proc,
            });
        }
        for n in &nodes {
            wait_port(&n.name, n.port, Duration::from_secs(10))?;
        }
        Ok(NatsCluster { nodes, _dir: dir })
    }

    /// Every node's URL, comma-separated: what `NATS_URL` holds for a clustered deployment.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(ClusterNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node called `name`.
    pub fn node(&mut self, name: &str) -> Option<&mut ClusterNode> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = n.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                format!("\n--- {} (last 60 lines) ---\n{tail}\n", n.name)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn private_servers_take_their_directories_and_logs_with_them() {
        let nats = PrivateNats::start().unwrap();
        let dir = nats._dir.path().to_owned();
        let log = nats.proc.log.clone();
        assert!(dir.exists() && log.exists());
        drop(nats);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!log.exists(), "{} left behind", log.display());
        let cluster = NatsCluster::start().unwrap();
        let dir = cluster._dir.path().to_owned();
        assert!(dir.join("n1.conf").exists());
        drop(cluster);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
