//! The real bootstrap script, rendered as for a Vast.ai instance and run by
//! `sh` in a sandbox directory. A local HTTP server plays the runner release
//! download, Vast.ai's self-destroy endpoint and rigger's callback; only what
//! a sandbox cannot really do is shimmed on PATH (`nvidia-smi`, `useradd`,
//! `id`, `runuser`, `chown`, `uname`, package managers). Tests that need a
//! tool to be missing run with a PATH of their own (links to the real tools
//! they keep).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use sha2::{Digest, Sha256};

use rigger::bootstrap::{self, BootstrapSpec};
use rigger::config::model::SetupInfo;
use rigger::settings::Secret;

/// What the fake Vast.ai, download server and rigger saw.
#[derive(Default)]
struct Seen {
    /// The architecture of each download.
    downloads: Vec<String>,
    destroys: Vec<(String, String)>,
    /// (authorization, query, body)
    callbacks: Vec<(String, String, String)>,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
    tgz: Bytes,
    /// Destroy calls to answer 500 before one succeeds.
    destroy_failures: Arc<AtomicUsize>,
    callback_status: StatusCode,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn serve(tarball: Vec<u8>) -> Server {
    serve_with(tarball, 0, StatusCode::NO_CONTENT).await
}

async fn serve_with(
    tarball: Vec<u8>,
    destroy_failures: usize,
    callback_status: StatusCode,
) -> Server {
    let fake = Fake {
        seen: Arc::default(),
        tgz: Bytes::from(tarball),
        destroy_failures: Arc::new(AtomicUsize::new(destroy_failures)),
        callback_status,
    };
    let seen = fake.seen.clone();
    let app = Router::new()
        .route(
            "/runner-{arch}",
            get(|State(f): State<Fake>, UrlPath(arch): UrlPath<String>| async move {
                let arch = arch.trim_end_matches(".tgz").to_string();
                f.seen.lock().unwrap().downloads.push(arch);
                f.tgz
            }),
        )
        .route(
            "/api/v0/instances/{id}/",
            delete(
                |State(f): State<Fake>, UrlPath(id): UrlPath<String>, headers: HeaderMap| async move {
                    // Vast.ai reads a body only as JSON: like the simulated
                    // one, refuse a destroy that does not say so.
                    if !header(&headers, "content-type").starts_with("application/json") {
                        return (StatusCode::BAD_REQUEST, "{\"success\": false}");
                    }
                    let auth = header(&headers, "authorization");
                    f.seen.lock().unwrap().destroys.push((id, auth));
                    let failing = f
                        .destroy_failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if failing {
                        (StatusCode::INTERNAL_SERVER_ERROR, "{\"success\": false}")
                    } else {
                        (StatusCode::OK, "{\"success\": true}")
                    }
                },
            ),
        )
        .route(
            "/callback",
            post(
                |State(f): State<Fake>, RawQuery(q): RawQuery, headers: HeaderMap, body: String| async move {
                    let auth = header(&headers, "authorization");
                    f.seen
                        .lock()
                        .unwrap()
                        .callbacks
                        .push((auth, q.unwrap_or_default(), body));
                    f.callback_status
                },
            ),
        )
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, seen }
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A stand-in for the actions/runner release: `run.sh` records what it was
/// given — its own environment (`runner-env`), and a job step's after
/// loading `.env` as the real runner does (`step-env`) — runs the
/// job-started hook (unless told to wait for a job that never comes) and exits.
fn run_sh(behaviour: &str) -> String {
    format!(
        r#"#!/bin/sh
printf '%s' "$ACTIONS_RUNNER_INPUT_JITCONFIG" > ../jit-seen
env > ../runner-env
cp .env ../env-seen
# .env is KEY=VALUE lines, read literally (values may hold spaces), as the real runner reads it.
[ -f ./.env ] && while IFS= read -r l; do case $l in *=*) export "$l" ;; esac; done < ./.env
env > ../step-env
case "{behaviour}" in
  job) "$ACTIONS_RUNNER_HOOK_JOB_STARTED"; echo "runner: ran a job"; exit 0 ;;
  never) while true; do sleep 1; done ;;
  # What the real run.sh does when its listener fails or refuses root.
  quit) echo "Must not run interactively with sudo"; echo "Exiting runner..."; exit 0 ;;
esac
"#
    )
}

fn runner_tarball(dir: &Path, behaviour: &str) -> Vec<u8> {
    let src = dir.join("runner-src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    write_exec(&src.join("run.sh"), &run_sh(behaviour));
    // As the real release has it: what the runner's libraries need.
    write_exec(
        &src.join("bin/installdependencies.sh"),
        "#!/bin/sh\necho \"--------OS Information--------\"\necho \"Installing libicu (simulated)\"\n",
    );
    let tgz = dir.join("runner.tgz");
    let status = Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(tgz).unwrap()
}

/// The real tools a sandbox with its own PATH keeps.
const TOOLS: &[&str] = &[
    "sh",
    "env",
    "date",
    "mkdir",
    "dirname",
    "tee",
    "cat",
    "sed",
    "grep",
    "tr",
    "cut",
    "tail",
    "sleep",
    "touch",
    "rm",
    "chmod",
    "ln",
    "base64",
    "sha256sum",
    "uname",
    "id",
    "setsid",
    "curl",
    "tar",
    "gzip",
];

fn which(tool: &str) -> PathBuf {
    for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("the test needs {tool}");
}

const PACKAGE_MANAGERS: [&str; 4] = ["apt-get", "dnf", "yum", "apk"];

/// How one sandboxed machine is set up.
struct Machine {
    dir: PathBuf,
    gpus: String,
    vast_vars: Vec<(String, String)>,
    /// `Some(tools)`: PATH is the shims and links to these real tools only.
    tools: Option<Vec<&'static str>>,
    /// Extra shims: (name, script).
    shims: Vec<(String, String)>,
    /// VM mode: the variables go to the sandbox's /etc/environment only.
    vm: bool,
    /// Default shims not to make (package managers this machine lacks).
    absent: Vec<&'static str>,
}

impl Machine {
    fn new(name: &str) -> Machine {
        let dir = std::env::temp_dir().join(format!("rigger-boot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Machine {
            dir,
            gpus: "NVIDIA GeForce RTX 4090\\n".into(),
            vast_vars: vec![
                ("CONTAINER_ID".into(), "4242".into()),
                ("CONTAINER_API_KEY".into(), "k-123".into()),
            ],
            tools: None,
            shims: Vec::new(),
            vm: false,
            absent: Vec::new(),
        }
    }

    fn without(mut self, missing: &[&str]) -> Machine {
        self.tools = Some(
            TOOLS
                .iter()
                .copied()
                .filter(|t| !missing.contains(t))
                .collect(),
        );
        self
    }

    fn shim(mut self, name: &str, script: &str) -> Machine {
        self.shims.push((name.into(), script.into()));
        self
    }

    fn gpus(mut self, gpus: &str) -> Machine {
        self.gpus = gpus.into();
        self
    }

    fn no_vast_key(mut self) -> Machine {
        self.vast_vars.clear();
        self
    }

    fn vm(mut self) -> Machine {
        self.vm = true;
        self.no_vast_key()
    }

    fn bin(&self) -> PathBuf {
        let bin = self.dir.join("shims");
        std::fs::create_dir_all(&bin).unwrap();
        let gpus = &self.gpus;
        write_exec(
            &bin.join("nvidia-smi"),
            &format!("#!/bin/sh\nprintf '{gpus}'\n"),
        );
        // No real user is created on the test machine.
        write_exec(&bin.join("useradd"), "#!/bin/sh\nexit 1\n");
        write_exec(&bin.join("adduser"), "#!/bin/sh\nexit 1\n");
        write_exec(
            &bin.join("id"),
            &format!(
                "#!/bin/sh\n[ \"$1\" = runner ] && exit 1\nexec {} \"$@\"\n",
                which("id").display()
            ),
        );
        for pm in PACKAGE_MANAGERS.iter().filter(|p| !self.absent.contains(p)) {
            write_exec(
                &bin.join(pm),
                "#!/bin/sh\necho \"${0##*/} $*\" >> \"${0%/*}/installs\"\n",
            );
        }
        for (name, script) in &self.shims {
            write_exec(&bin.join(name), script);
        }
        bin
    }

    fn path(&self) -> String {
        let bin = self.bin();
        match &self.tools {
            None => format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                bin.display()
            ),
            Some(tools) => {
                let t = self.dir.join("tools");
                std::fs::create_dir_all(&t).unwrap();
                for tool in tools {
                    std::os::unix::fs::symlink(which(tool), t.join(tool)).unwrap();
                }
                format!("{}:{}", bin.display(), t.display())
            }
        }
    }

    /// Run the rendered onstart like Vast.ai would: `sh`, with the
    /// instance's environment and Vast.ai's own variables (a VM: only in
    /// /etc/environment, quoted, one value with spaces).
    fn run(&self, spec: &BootstrapSpec) -> Run {
        let dir = &self.dir;
        let rendered = bootstrap::render(spec).expect("an environment Vast.ai takes");
        let onstart = dir.join("onstart.sh");
        std::fs::write(&onstart, &rendered.onstart).unwrap();
        let mut vars: Vec<(String, String)> = rendered.env.clone().into_iter().collect();
        vars.extend(self.vast_vars.iter().cloned());
        vars.push(("GREETING".into(), "hello world".into()));
        let mut cmd = Command::new("sh");
        cmd.arg(&onstart)
            .current_dir(dir)
            .env_clear()
            .env("PATH", self.path())
            .env("HOME", dir)
            .env("RIGGER_DIR", dir.join("runner"))
            .env("RIGGER_LOG", dir.join("bootstrap.log"))
            .env("RIGGER_SUDOERS_DIR", dir.join("sudoers.d"))
            .env("RIGGER_ETC_ENVIRONMENT", dir.join("etc-environment"));
        if self.vm {
            let etc: String = vars.iter().map(|(k, v)| format!("{k}=\"{v}\"\n")).collect();
            std::fs::write(dir.join("etc-environment"), format!("# Vast.ai\n{etc}")).unwrap();
        } else {
            // The image's environment as PID 1 has it: its own variables and
            // the instance's, secrets included (they must not leak on).
            let mut environ = "PATH=/usr/bin\0CUDA_HOME=/usr/local/cuda\0".to_string();
            for (k, v) in &vars {
                environ.push_str(&format!("{k}={v}\0"));
            }
            std::fs::write(dir.join("environ"), environ).unwrap();
            cmd.env("RIGGER_ENV_FROM", dir.join("environ"));
            for (k, v) in &vars {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        let log = std::fs::read_to_string(dir.join("bootstrap.log")).unwrap_or_default();
        Run {
            status: out.status.code().unwrap_or(-1),
            log: format!(
                "{log}\n--- stdout:\n{}\n--- stderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            dir: dir.to_path_buf(),
        }
    }
}

struct Run {
    status: i32,
    log: String,
    dir: PathBuf,
}

impl Run {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

fn spec(server: &Server, sha256: Option<String>, gpu: &str) -> BootstrapSpec {
    BootstrapSpec {
        vm: false,
        vast_url: server.url.clone(),
        runner_url: format!("{}/runner-{{arch}}.tgz", server.url),
        runner_arch: "x64".into(),
        runner_sha256: sha256,
        allow_unverified: false,
        preinstalled_runner: None,
        gpu_count: 1,
        gpu_models: vec![gpu.into()],
        idle_timeout_secs: 2,
        jit_config: Secret::new(format!("jit-{}", "x".repeat(700))),
        setup_info: vec![SetupInfo {
            group: "GPU".into(),
            detail: "RTX 4090".into(),
        }],
        env_vars: BTreeMap::from([("MY_SETTING".into(), "on".into())]),
        callback: None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A server with a runner tarball, and a spec that verifies it.
async fn world(name: &str, behaviour: &str) -> (Machine, Server, BootstrapSpec) {
    let m = Machine::new(name);
    let tgz = runner_tarball(&m.dir, behaviour);
    let sum = sha256_hex(&tgz);
    let server = serve(tgz).await;
    let s = spec(&server, Some(sum), "RTX 4090");
    (m, server, s)
}

async fn boot(m: Machine, s: BootstrapSpec) -> Run {
    tokio::task::spawn_blocking(move || m.run(&s))
        .await
        .unwrap()
}

const TOKEN: &str = "tok-SECRET-callback";

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_and_the_machine_destroys_itself() {
    let (m, server, s) = world("happy", "job").await;
    let r = boot(m, s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("GPUs ok: NVIDIA GeForce RTX 4090"),
        "{}",
        r.log
    );
    assert!(r.log.contains("runner: ran a job"), "{}", r.log);
    assert!(r.log.contains("the runner exited with 0"), "{}", r.log);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.downloads, vec!["x64"], "the machine's architecture");
    assert_eq!(
        seen.destroys,
        vec![("4242".to_string(), "Bearer k-123".to_string())]
    );
    // The JIT config arrived whole; the runner got the image's environment
    // and the user's env_vars, but no secrets.
    assert_eq!(r.file("jit-seen"), format!("jit-{}", "x".repeat(700)));
    let env = r.file("env-seen");
    assert!(env.contains("CUDA_HOME=/usr/local/cuda"), "{env}");
    assert!(env.contains("MY_SETTING=on"), "{env}");
    assert!(!env.contains("k-123"), "{env}");
    assert!(!env.contains("RIGGER_JIT"), "{env}");
    assert!(
        !r.log.contains("xxxxxxxx"),
        "the JIT config reached the log"
    );
    assert_eq!(
        r.file("runner/.setup_info"),
        r#"[{"detail":"RTX 4090","group":"GPU"}]"#
    );
    // It said why the runner runs as root here.
    assert!(r.log.contains("running the runner as root"), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_step_sees_none_of_riggers_or_vast_ais_secrets() {
    let (m, server, mut s) = world("scrub", "job").await;
    s.callback = Some((format!("{}/callback", server.url), Secret::new(TOKEN)));
    let r = boot(m, s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    for file in ["runner-env", "step-env"] {
        let env = r.file(file);
        assert!(env.contains("PATH="), "{file}: {env}");
        // (The JIT config itself it needs: ACTIONS_RUNNER_INPUT_JITCONFIG.)
        for secret in ["k-123", "CONTAINER_API_KEY", "RIGGER_", TOKEN] {
            assert!(!env.contains(secret), "{file} has {secret}:\n{env}");
        }
    }
    // What the job is meant to have, it has.
    let step = r.file("step-env");
    assert!(step.contains("MY_SETTING=on"), "{step}");
    assert!(step.contains("GREETING=hello world"), "{step}");
    assert!(step.contains("CUDA_HOME=/usr/local/cuda"), "{step}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_gpu_fails_fast_before_installing_anything_and_still_destroys() {
    let (m, server, s) = world("gpu", "job").await;
    let m = m
        .gpus("NVIDIA GeForce RTX 3090\\n")
        .without(&["curl", "tar"])
        .shim(
            "curl",
            "#!/bin/sh\n[ \"$1\" = -fsS ] || exit 1\nexec /usr/bin/curl \"$@\"\n",
        );
    let dir = m.dir.clone();
    let r = boot(m, s).await;
    assert_eq!(r.status, 1);
    assert!(
        r.log
            .contains("FAILED: expected 1 x RTX 4090, found 1: NVIDIA GeForce RTX 3090"),
        "{}",
        r.log
    );
    assert!(
        !dir.join("shims/installs").exists(),
        "installed before checking the GPUs"
    );
    let seen = server.seen.lock().unwrap();
    assert!(seen.downloads.is_empty(), "it failed before downloading");
    assert_eq!(seen.destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_checksum_is_refused() {
    let (m, server, mut s) = world("sum", "job").await;
    s.runner_sha256 = Some("0".repeat(64));
    let r = boot(m, s).await;
    assert_eq!(r.status, 1);
    assert!(r.log.contains("checksum mismatch"), "{}", r.log);
    assert!(r.file("jit-seen").is_empty(), "the runner never started");
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_checksum_is_refused_unless_unverified_runs_are_allowed() {
    let (m, server, mut s) = world("nosum", "job").await;
    s.runner_sha256 = None;
    let r = boot(m, s.clone()).await;
    assert_eq!(r.status, 1);
    assert!(
        r.log.contains("refusing to run an unverified runner"),
        "{}",
        r.log
    );
    assert!(server.seen.lock().unwrap().downloads.is_empty());

    s.allow_unverified = true;
    let r = boot(Machine::new("nosum-allowed"), s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("running") && r.log.contains("unverified"),
        "{}",
        r.log
    );
    assert!(r.log.contains("runner: ran a job"), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_job_within_the_idle_timeout_stops_the_runner() {
    let (m, server, s) = world("idle", "never").await;
    let r = boot(m, s).await;
    assert!(
        r.log.contains("no job within 2s: stopping the runner"),
        "{}",
        r.log
    );
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_reads_etc_environment_and_calls_rigger_back() {
    let (m, server, mut s) = world("vm", "job").await;
    s.vm = true;
    s.callback = Some((
        format!("{}/callback", server.url),
        Secret::new("t".repeat(300)),
    ));
    let r = boot(m.vm(), s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    let seen = server.seen.lock().unwrap();
    assert!(seen.destroys.is_empty());
    assert_eq!(seen.callbacks.len(), 1);
    let (auth, query, body) = &seen.callbacks[0];
    assert_eq!(auth, &format!("Bearer {}", "t".repeat(300)));
    assert_eq!(query, "exit_code=0");
    assert!(
        body.contains("the runner exited with 0"),
        "the log's tail: {body}"
    );
    // /etc/environment's values are not shell: quotes off, spaces kept.
    let env = r.file("env-seen");
    assert!(env.contains("GREETING=hello world\n"), "{env}");
    assert!(env.contains("MY_SETTING=on\n"), "{env}");
    // rigger's secrets are out of the world-readable file once read.
    let etc = r.file("etc-environment");
    assert!(etc.contains("GREETING=\"hello world\""), "{etc}");
    assert!(!etc.contains("RIGGER_") && !etc.contains("tttt"), "{etc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_boot_tells_rigger_why_before_the_machine_goes() {
    let (m, server, mut s) = world("report", "job").await;
    s.callback = Some((format!("{}/callback", server.url), Secret::new(TOKEN)));
    let r = boot(m.gpus("NVIDIA GeForce RTX 3090\\n"), s).await;
    assert_eq!(r.status, 1, "{}", r.log);
    let seen = server.seen.lock().unwrap();
    let (auth, query, body) = &seen.callbacks[0];
    assert_eq!(auth, &format!("Bearer {TOKEN}"));
    assert_eq!(query, "exit_code=1");
    assert!(
        body.contains("FAILED: expected 1 x RTX 4090, found 1: NVIDIA GeForce RTX 3090"),
        "{body}"
    );
    assert!(!r.log.contains(TOKEN), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn rigger_unreachable_the_per_instance_key_destroys() {
    let m = Machine::new("nocallback");
    let tgz = runner_tarball(&m.dir, "job");
    // rigger answers 503: the machine falls back to its own key.
    let server = serve_with(tgz.clone(), 0, StatusCode::SERVICE_UNAVAILABLE).await;
    let mut s = spec(&server, Some(sha256_hex(&tgz)), "RTX 4090");
    s.callback = Some((format!("{}/callback", server.url), Secret::new(TOKEN)));
    let r = boot(m, s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.callbacks.len(), 1);
    assert_eq!(
        seen.destroys,
        vec![("4242".to_string(), "Bearer k-123".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_self_destroy_is_retried_until_vast_ai_answers() {
    let m = Machine::new("retry");
    let tgz = runner_tarball(&m.dir, "job");
    let server = serve_with(tgz.clone(), 2, StatusCode::NO_CONTENT).await;
    let s = spec(&server, Some(sha256_hex(&tgz)), "RTX 4090");
    let r = boot(m, s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("destroy attempt 2 failed; retrying"),
        "{}",
        r.log
    );
    assert!(!r.log.contains("could not destroy"), "{}", r.log);
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loader_that_cannot_decode_still_destroys_the_machine() {
    let (m, server, s) = world("nobase64", "job").await;
    let r = boot(m.without(&["base64"]), s).await;
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(
        r.log
            .contains("no base64 on this machine: destroying this machine"),
        "{}",
        r.log
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(
        seen.destroys,
        vec![("4242".to_string(), "Bearer k-123".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_download_follows_the_machines_architecture() {
    let arm = "#!/bin/sh\n[ \"$1\" = -m ] && { echo aarch64; exit 0; }\necho Linux\n";
    let (m, server, mut s) = world("arm64", "job").await;
    s.runner_arch = "arm64".into();
    let r = boot(m.shim("uname", arm), s.clone()).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(server.seen.lock().unwrap().downloads, vec!["arm64"]);

    // A runner registered as x64 on an arm64 machine would run under false labels.
    s.runner_arch = "x64".into();
    let r = boot(Machine::new("arm64-x64").shim("uname", arm), s).await;
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(
        r.log
            .contains("this machine is aarch64 (arm64), but its runner was registered for x64"),
        "{}",
        r.log
    );
    assert_eq!(
        server.seen.lock().unwrap().downloads.len(),
        1,
        "no second download"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_installed_in_the_image_is_used_instead_of_downloading() {
    let (m, server, mut s) = world("preinstalled", "job").await;
    let image_runner = m.dir.join("actions-runner");
    std::fs::create_dir_all(&image_runner).unwrap();
    write_exec(&image_runner.join("run.sh"), &run_sh("job"));
    s.preinstalled_runner = Some(image_runner.display().to_string());
    let r = boot(m, s.clone()).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("using the runner installed in the image at"),
        "{}",
        r.log
    );
    assert!(r.log.contains("runner: ran a job"), "{}", r.log);
    assert!(server.seen.lock().unwrap().downloads.is_empty());

    // The path set, but nothing there: it downloads.
    s.preinstalled_runner = Some("/nonexistent/actions-runner".into());
    let r = boot(Machine::new("preinstalled-absent"), s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(server.seen.lock().unwrap().downloads.len(), 1);
}

/// A package manager shim that "installs" curl and tar by linking the real ones.
fn installer(tools: &Path) -> String {
    format!(
        "#!/bin/sh\necho \"${{0##*/}} $*\" >> \"${{0%/*}}/installs\"\nfor p in \"$@\"; do case $p in curl) ln -sf {} {t}/curl ;; tar) ln -sf {} {t}/tar ;; esac; done\n",
        which("curl").display(),
        which("tar").display(),
        t = tools.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tools_are_installed_with_the_package_manager_there_is() {
    for (pm, expected) in [
        ("apt-get", "apt-get install -y -qq curl tar"),
        ("dnf", "dnf install -y -q curl tar"),
        ("yum", "yum install -y -q curl tar"),
        ("apk", "apk add -q --no-cache curl tar"),
    ] {
        let (mut m, server, s) = world(&format!("pkg-{pm}"), "job").await;
        // Only this package manager exists on this machine, and no curl or tar.
        m.absent = PACKAGE_MANAGERS.to_vec();
        let tools = m.dir.join("tools");
        let m = m.without(&["curl", "tar"]).shim(pm, &installer(&tools));
        let dir = m.dir.clone();
        let r = boot(m, s).await;
        assert_eq!(r.status, 0, "{pm}: {}", r.log);
        let installs = std::fs::read_to_string(dir.join("shims/installs")).unwrap_or_default();
        assert!(installs.contains(expected), "{pm}: {installs}");
        assert!(r.log.contains("installing: curl tar"), "{pm}: {}", r.log);
        assert_eq!(server.seen.lock().unwrap().downloads.len(), 1, "{pm}");
    }
}

/// `id` that says root, and knows `runner` once `useradd` made it.
const ID_ROOT: &str = "#!/bin/sh\nd=$(dirname \"$0\")\ncase \"$1\" in\n  -u) echo 0 ;;\n  -un) echo root ;;\n  runner) [ -e \"$d/runner-user\" ] ;;\n  *) echo 'uid=0(root)' ;;\nesac\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_runs_as_an_unprivileged_user_where_one_can_be_made() {
    let (m, server, s) = world("user", "job").await;
    let m = m
        .shim("id", ID_ROOT)
        .shim(
            "useradd",
            "#!/bin/sh\necho \"useradd $*\" >> \"$(dirname \"$0\")/calls\"\ntouch \"$(dirname \"$0\")/runner-user\"\n",
        )
        .shim("chown", "#!/bin/sh\necho \"chown $*\" >> \"$(dirname \"$0\")/calls\"\n")
        // Drops to the user for real on a machine; here it records and runs.
        .shim(
            "runuser",
            "#!/bin/sh\necho \"runuser $*\" >> \"$(dirname \"$0\")/calls\"\n[ \"$1 $2 $3\" = \"-u runner --\" ] || exit 64\nshift 3\nexec \"$@\"\n",
        );
    let dir = m.dir.clone();
    std::fs::create_dir_all(dir.join("sudoers.d")).unwrap();
    let r = boot(m, s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("starting the runner as runner"), "{}", r.log);
    assert!(!r.log.contains("running the runner as root"), "{}", r.log);
    let calls = std::fs::read_to_string(dir.join("shims/calls")).unwrap();
    assert!(calls.contains("useradd -m runner"), "{calls}");
    assert!(
        calls.contains(&format!("chown -R runner {}", dir.join("runner").display())),
        "{calls}"
    );
    assert!(calls.contains("runuser -u runner -- ./run.sh"), "{calls}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sudoers.d/runner")).unwrap(),
        "runner ALL=(ALL) NOPASSWD:ALL\n"
    );
    assert!(r.log.contains("runner: ran a job"), "{}", r.log);
    let env = r.file("runner-env");
    assert!(
        !env.contains("RUNNER_ALLOW_RUNASROOT") && !env.contains("k-123"),
        "{env}"
    );
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_root_it_says_who_it_runs_as() {
    let (m, _server, s) = world("notroot", "job").await;
    let id = "#!/bin/sh\ncase \"$1\" in -u) echo 1000 ;; -un) echo ci ;; runner) exit 1 ;; *) echo 'uid=1000(ci)' ;; esac\n";
    let r = boot(m.shim("id", id), s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("starting on") && r.log.contains(", as ci"),
        "{}",
        r.log
    );
    assert!(r.log.contains("starting the runner as ci"), "{}", r.log);
    assert!(!r.log.contains("as root"), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_that_exits_0_without_taking_a_job_is_reported_as_a_failure() {
    // The real run.sh exits 0 when its listener fails or refuses to run as
    // root: only the job-started hook's marker says a job ran.
    let (m, server, mut s) = world("quit", "quit").await;
    s.callback = Some((format!("{}/callback", server.url), Secret::new(TOKEN)));
    let r = boot(m, s).await;
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(
        r.log
            .contains("FAILED: the runner exited (code 0) without taking a job"),
        "{}",
        r.log
    );
    let seen = server.seen.lock().unwrap();
    let (_, query, body) = &seen.callbacks[0];
    assert_eq!(
        query, "exit_code=1",
        "rigger hears it failed, and re-queues at once"
    );
    assert!(
        body.contains("Must not run interactively with sudo"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runners_libraries_are_installed_with_their_output_in_the_log() {
    let (m, _server, s) = world("deps", "job").await;
    // No libicu on this machine.
    let r = boot(m.shim("ldconfig", "#!/bin/sh\nexit 0\n"), s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("installing the runner's libraries"),
        "{}",
        r.log
    );
    assert!(r.log.contains("Installing libicu (simulated)"), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_user_gets_passwordless_sudo_even_where_the_image_has_none() {
    let (m, server, s) = world("sudo", "job").await;
    let tools = m.dir.join("tools");
    // An nvidia/cuda-like image: root, apt-get, no sudo.
    let apt = format!(
        "#!/bin/sh\necho \"${{0##*/}} $*\" >> \"${{0%/*}}/installs\"\ncase \"$*\" in *sudo*) printf '#!/bin/sh\\nexec \"$@\"\\n' > {t}/sudo; chmod +x {t}/sudo ;; esac\n",
        t = tools.display()
    );
    let m = m
        .without(&[])
        .shim("id", ID_ROOT)
        .shim(
            "useradd",
            "#!/bin/sh\ntouch \"$(dirname \"$0\")/runner-user\"\n",
        )
        .shim("chown", "#!/bin/sh\n")
        .shim("runuser", "#!/bin/sh\nshift 3\nexec \"$@\"\n")
        .shim("apt-get", &apt);
    let dir = m.dir.clone();
    let r = boot(m, s).await;
    assert_eq!(r.status, 0, "{}", r.log);
    let installs = std::fs::read_to_string(dir.join("shims/installs")).unwrap_or_default();
    assert!(
        installs.contains("install -y -qq sudo"),
        "{installs}\n{}",
        r.log
    );
    let sudoers = dir.join("sudoers.d/runner");
    assert_eq!(
        std::fs::read_to_string(&sudoers).unwrap_or_default(),
        "runner ALL=(ALL) NOPASSWD:ALL\n",
        "{}",
        r.log
    );
    let mode = std::fs::metadata(&sudoers).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o440,
        "sudo reads only a file no one may write"
    );
    assert!(r.log.contains("runner: ran a job"), "{}", r.log);
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 1);
}

/// The loader's failure path against the simulated Vast.ai: an instance
/// whose bootstrap script cannot be decoded destroys itself with its own key,
/// in a request the real API accepts.
#[tokio::test(flavor = "multi_thread")]
async fn a_loader_that_cannot_decode_destroys_its_instance_on_the_simulated_vast_ai() {
    use rigger::engine::ports::ManualClock;
    use rigger::sim::machine::Machines;
    use rigger::sim::vast::{Phase, Rental, SimConfig, SimVast};

    let clock = ManualClock::new(1_700_000_000_000);
    let sim = SimVast::new(
        SimConfig {
            offers: 20,
            boot_delay_ms: 0,
            ..SimConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = std::env::temp_dir().join(format!("rigger-boot-{}-simdestroy", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    Machines::new(dir, sim.clone())
        .on_exit(Arc::new(move |id, code| {
            let _ = tx.lock().unwrap().send((id, code));
        }))
        .install();
    let offer = sim.offer_ids()[0];
    let id = sim
        .rent(
            offer,
            Rental {
                image: "ubuntu:22.04".into(),
                disk_gb: 20.0,
                label: Some("rigger:test:1:x".into()),
                env: vec![
                    ("RIGGER_SCRIPT_0".into(), "!!! not base64 !!!".into()),
                    ("RIGGER_VAST_URL".into(), url.clone()),
                ],
                onstart: Some("/bin/sh".into()),
                args: vec!["-c".into(), bootstrap::loader()],
                runtype: "args".into(),
                vm: false,
                bid: None,
            },
        )
        .unwrap();
    sim.tick();
    let (ran, code) =
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("the machine's script ends");
    assert_eq!(ran, id);
    let log = sim.log(id).unwrap_or_default();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("cannot decode the bootstrap script"), "{log}");
    assert_eq!(
        sim.phase(id),
        Some(Phase::Destroyed),
        "the simulated Vast.ai took the self-destroy: {log}"
    );
    assert_eq!(sim.requests("DELETE /api/v0/instances/:id"), 1, "{log}");
}

#[test]
fn the_scripts_pass_shellcheck() {
    let Ok(out) = Command::new("shellcheck").arg("--version").output() else {
        eprintln!("skipping: shellcheck is not installed (.ci/run installs it)");
        return;
    };
    assert!(out.status.success());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bootstrap");
    let out = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(root.join("bootstrap.sh"))
        .arg(root.join("onstart.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
