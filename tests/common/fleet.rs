//! The fleet's test bed (tests/fleet.rs, benches/fleet.rs): a hub
//! namespace with a bridge and Debian's crowdsec running its Local API
//! alone (`crowdsec -no-cs -no-capi`, a config and sqlite file of the
//! test's own), nftsentry daemons with `[crowdsec]` on the bridge, and a
//! scanner. Everything goes with the namespaces and temporary directories.

use super::*;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

pub const LAPI: &str = "192.0.2.254";
pub const A: &str = "192.0.2.1";
pub const B: &str = "192.0.2.2";
pub const SCANNER: &str = "192.0.2.66";
/// More addresses of the scanner's namespace (on the bridge too).
pub const OTHER: &str = "192.0.2.77";
pub const RANGE_IN: &str = "198.51.100.7";
pub const RANGE_IGNORED: &str = "198.51.100.200";

/// The hub with its bridge and the LAPI, and the namespaces on it.
pub struct Hub {
    pub hub: Netns,
    pub dir: TempDir,
    lapi_pid: Option<u32>,
    hosts: std::cell::Cell<u32>,
}

pub fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Hub {
    pub fn new(tag: &str) -> Hub {
        let hub = Netns::new(&format!("{tag}h"));
        // A fixed address: a bridge without one takes its ports' lowest,
        // which changes as hosts join, and the hosts' ARP entries for the
        // LAPI would then point at a port.
        hub.ip(&[
            "link",
            "add",
            "br0",
            "address",
            "02:00:00:00:00:fe",
            "type",
            "bridge",
        ]);
        hub.ip(&["addr", "add", &format!("{LAPI}/24"), "dev", "br0"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let dir = TempDir::new(tag);
        Hub {
            hub,
            dir,
            lapi_pid: None,
            hosts: std::cell::Cell::new(0),
        }
    }

    /// A namespace on the bridge with `addrs` (the first is its own, the
    /// others on the same link), and routes to 198.51.100.0/24 on the link.
    pub fn host(&self, tag: &str, addrs: &[&str]) -> Netns {
        let ns = Netns::new(tag);
        // Veths live in the hub: their names need only be unique there.
        self.hosts.set(self.hosts.get() + 1);
        let veth = &format!("port{}", self.hosts.get());
        self.hub.ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.hub.ip(&["link", "set", veth, "master", "br0"]);
        self.hub.ip(&["link", "set", veth, "up"]);
        for a in addrs {
            let prefix = if a.starts_with("192.0.2.") { 24 } else { 32 };
            ns.ip(&["addr", "add", &format!("{a}/{prefix}"), "dev", "eth0"]);
        }
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "198.51.100.0/24", "dev", "eth0"]);
        ns
    }

    pub fn cfg(&self) -> PathBuf {
        self.dir.path.join("crowdsec.yaml")
    }

    /// Writes the LAPI's config and credentials: machines hostA and hostB
    /// (password "pw-" + name), bouncers with key "key-" + name, and the
    /// `cli` machine cscli itself uses.
    pub fn setup_lapi(&self, listen: &str) {
        self.setup_lapi_tls(listen, false)
    }

    /// With `tls`, the LAPI serves a certificate for 192.0.2.254 signed by
    /// a CA the test makes (`ca.pem` in the hub's directory).
    pub fn setup_lapi_tls(&self, listen: &str, tls: bool) {
        let d = &self.dir.path;
        let (server_tls, client_tls, scheme) = if tls {
            make_certs(d);
            (
                format!(
                    "    tls:\n      cert_file: {}/server.pem\n      key_file: {}/server.key\n",
                    d.display(),
                    d.display()
                ),
                "    insecure_skip_verify: true\n",
                "https",
            )
        } else {
            (String::new(), "", "http")
        };
        let yaml = format!(
            "common:\n  daemonize: false\n  log_media: file\n  log_level: info\n  log_dir: {d}/\n  working_dir: .\n\
config_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n  simulation_path: {d}/simulation.yaml\n  hub_dir: /var/lib/crowdsec/hub/\n  index_path: /var/lib/crowdsec/hub/.index.json\n  notification_dir: {d}/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\n\
crowdsec_service:\n  acquisition_path: {d}/acquis.yaml\n\
cscli:\n  output: human\n\
db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n\
api:\n  client:\n    credentials_path: {d}/cli.yaml\n{client_tls}  server:\n    log_level: info\n    listen_uri: {listen}\n    profiles_path: /etc/crowdsec/profiles.yaml\n{server_tls}    trusted_ips:\n      - 127.0.0.1\n      - \"::1\"\n\
prometheus:\n  enabled: false\n",
            d = d.display()
        );
        self.dir.file("crowdsec.yaml", &yaml);
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("notifications")).unwrap();
        self.dir.file("acquis.yaml", "filenames: []\n");
        self.dir
            .file("simulation.yaml", "simulation: off\nexclusions: []\n");
        for m in ["hostA", "hostB", "hostC"] {
            self.cscli(&[
                "machines",
                "add",
                m,
                "--password",
                &format!("pw-{m}"),
                "-f",
                &d.join(format!("{m}.yaml")).display().to_string(),
            ]);
            self.cscli(&["bouncers", "add", m, "--key", &format!("key-{m}")]);
        }
        let listen = listen.replace("0.0.0.0", LAPI);
        let url = format!("{scheme}://{listen}");
        self.cscli(&[
            "machines",
            "add",
            "cli",
            "--auto",
            "-f",
            &d.join("cli.yaml").display().to_string(),
            "--url",
            &url,
        ]);
    }

    pub fn start_lapi(&mut self) {
        let log = std::fs::File::create(self.dir.path.join("lapi.out")).unwrap();
        let mut c = self.hub.cmd("crowdsec");
        c.arg("-c")
            .arg(self.cfg())
            .args(["-no-cs", "-no-capi"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.lapi_pid = Some(self.hub.spawn(&mut c));
        assert!(
            wait_until(Duration::from_secs(20), || {
                self.hub
                    .cmd("cscli")
                    .arg("-c")
                    .arg(self.cfg())
                    .args(["decisions", "list", "-a"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            }),
            "the Local API did not answer; its log:\n{}",
            std::fs::read_to_string(self.dir.path.join("crowdsec_api.log")).unwrap_or_default()
        );
    }

    /// The end of the LAPI's own log, for failure messages.
    pub fn api_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path.join("crowdsec_api.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn stop_lapi(&mut self) {
        if let Some(pid) = self.lapi_pid.take() {
            let mut child = self.hub.take_child(pid);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `cscli -c CONFIG ARGS` in the hub, checked.
    pub fn cscli(&self, args: &[&str]) -> String {
        let o = run_ok(self.hub.cmd("cscli").arg("-c").arg(self.cfg()).args(args));
        out_text(&o)
    }

    /// A secret file of mode 0600.
    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.file(name, &format!("{value}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

/// One nftsentry daemon on the hub.
pub struct Daemon {
    pub ns: Netns,
    /// Holds the config, state and log until the daemon ends.
    _dir: TempDir,
    pub cfg: PathBuf,
    pub log: PathBuf,
    pub pid: u32,
}

impl Daemon {
    /// `machine` logs in as itself with its password and key (or the
    /// `password`/`key` given), pulling every second.
    pub fn start(
        hub: &Hub,
        tag: &str,
        addr: &str,
        machine: &str,
        ignore: &str,
        extra: &str,
        url: &str,
    ) -> Daemon {
        Daemon::start_with(hub, tag, addr, machine, ignore, extra, url, None, "")
    }

    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        hub: &Hub,
        tag: &str,
        addr: &str,
        machine: &str,
        ignore: &str,
        extra: &str,
        url: &str,
        creds: Option<(&str, &str)>,
        crowdsec_extra: &str,
    ) -> Daemon {
        let mut ns = hub.host(tag, &[addr]);
        let dir = TempDir::new(tag);
        let (pw, key) = creds.unwrap_or(("", ""));
        // The default timeout for the real LAPI; the server that never
        // answers gets a short one.
        let timeout = if url.ends_with(":8082") { "2s" } else { "10s" };
        let pw = if pw.is_empty() {
            format!("pw-{machine}")
        } else {
            pw.to_string()
        };
        let key = if key.is_empty() {
            format!("key-{machine}")
        } else {
            key.to_string()
        };
        let pw = hub.secret(&format!("{machine}-{tag}.pw"), &pw);
        let key = hub.secret(&format!("{machine}-{tag}.key"), &key);
        let ignore = dir.file("ignore", ignore);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "ignore_file = \"{}\"\n{}scan_trigger = 2\n{extra}\n\
[tcp]\nports = \"1,11,79,120,1000\"\n[udp]\nmode = \"off\"\n\
[crowdsec]\nenabled = true\nurl = \"{url}\"\nmachine_id = \"{machine}\"\n\
password_file = \"{}\"\napi_key_file = \"{}\"\npush_evidence = \"ports\"\n\
pull_interval = \"1s\"\ntimeout = \"{timeout}\"\n{crowdsec_extra}",
                ignore.display(),
                private_files(&dir.path),
                pw.display(),
                key.display()
            ),
        );
        let log = dir.path.join("log");
        let pid = start_daemon(&mut ns, &cfg, &log);
        Daemon {
            ns,
            _dir: dir,
            cfg,
            log,
            pid,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> String {
        out_text(&nftsentry(&self.ns, &self.cfg, &["status"]))
    }

    pub fn set(&self, name: &str) -> String {
        let o = self
            .ns
            .cmd("nft")
            .args(["list", "set", "inet", "nftsentry", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Whether `addr` is in the fleet's IPv4 set (as itself or in a range).
    pub fn fleet_has(&self, needle: &str) -> bool {
        self.set("fleet4").contains(needle)
    }
}

/// One echo request from `src` (an address of `from`) to `dst`: answered?
pub fn reaches(from: &Netns, src: &str, dst: &str) -> bool {
    from.cmd("ping")
        .args(["-c", "1", "-W", "1", "-I", src, dst])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// nmap over the tripwires: their residues modulo 32 differ, so the
/// tracker's port bits count every one and a ban rests on "ports"
/// evidence (pushed with push_evidence = "ports").
pub fn scan(from: &Netns, target: &str) -> String {
    let o = run_ok(from.cmd("nmap").args([
        "-sS",
        "-T5",
        "--max-retries",
        "0",
        "-Pn",
        "-n",
        "-p",
        "1,11,79,120,1000",
        target,
    ]));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A CA, and a certificate it signs for 192.0.2.254 only, in `dir`.
pub fn make_certs(dir: &std::path::Path) {
    let d = dir.display();
    let script = format!(
        "set -e; cd {d}; \
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=nftsentry-test-CA 2>/dev/null; \
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=192.0.2.254 2>/dev/null; \
printf 'subjectAltName=IP:192.0.2.254\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext; \
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null"
    );
    run_ok(std::process::Command::new("sh").args(["-c", &script]));
}
