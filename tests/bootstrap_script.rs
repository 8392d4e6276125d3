//! The real bootstrap script, rendered as for a Vast.ai instance and run by
//! `sh` in a sandbox directory. A local HTTP server plays the runner release
//! download and Vast.ai's self-destroy endpoint; only what a sandbox cannot
//! really do is shimmed on PATH (`nvidia-smi`, `useradd`, `id runner`,
//! package managers).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use sha2::{Digest, Sha256};

use rigger::bootstrap::{self, BootstrapSpec};
use rigger::config::model::SetupInfo;
use rigger::settings::Secret;

/// What the fake Vast.ai and download server saw.
#[derive(Default)]
struct Seen {
    downloads: usize,
    destroys: Vec<(String, String)>,
    callbacks: Vec<(String, String)>,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn serve(tarball: Vec<u8>) -> Server {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tarball = Bytes::from(tarball);
    let app = Router::new()
        .route(
            "/runner.tgz",
            get(
                |State((seen, tgz)): State<(Arc<Mutex<Seen>>, Bytes)>| async move {
                    seen.lock().unwrap().downloads += 1;
                    tgz
                },
            ),
        )
        .route(
            "/api/v0/instances/{id}/",
            delete(
                |State((seen, _)): State<(Arc<Mutex<Seen>>, Bytes)>,
                 UrlPath(id): UrlPath<String>,
                 headers: HeaderMap| async move {
                    let auth = header(&headers, "authorization");
                    seen.lock().unwrap().destroys.push((id, auth));
                    (StatusCode::OK, "{\"success\": true}")
                },
            ),
        )
        .route(
            "/callback",
            post(
                |State((seen, _)): State<(Arc<Mutex<Seen>>, Bytes)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let auth = header(&headers, "authorization");
                    seen.lock().unwrap().callbacks.push((auth, body));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state((seen.clone(), tarball));
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
/// given, loads `.env` as the real runner does, runs the job-started hook
/// (unless told to wait for a job that never comes) and exits.
fn runner_tarball(dir: &Path, behaviour: &str) -> Vec<u8> {
    let src = dir.join("runner-src");
    std::fs::create_dir_all(&src).unwrap();
    write_exec(
        &src.join("run.sh"),
        &format!(
            r#"#!/bin/sh
printf '%s' "$ACTIONS_RUNNER_INPUT_JITCONFIG" > ../jit-seen
cp .env ../env-seen
set -a; . ./.env; set +a
case "{behaviour}" in
  job) "$ACTIONS_RUNNER_HOOK_JOB_STARTED"; echo "runner: ran a job"; exit 0 ;;
  never) while true; do sleep 1; done ;;
esac
"#
        ),
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

/// PATH shims for what a sandbox cannot do.
fn shims(dir: &Path, gpus: &str) -> PathBuf {
    let bin = dir.join("shims");
    std::fs::create_dir_all(&bin).unwrap();
    write_exec(
        &bin.join("nvidia-smi"),
        &format!("#!/bin/sh\nprintf '{gpus}'\n"),
    );
    // No real user is created on the test machine.
    write_exec(&bin.join("useradd"), "#!/bin/sh\nexit 1\n");
    write_exec(&bin.join("adduser"), "#!/bin/sh\nexit 1\n");
    write_exec(
        &bin.join("id"),
        "#!/bin/sh\n[ \"$1\" = runner ] && exit 1\nexec /usr/bin/id \"$@\"\n",
    );
    for pm in ["apt-get", "dnf", "apk"] {
        write_exec(
            &bin.join(pm),
            "#!/bin/sh\necho \"$0 $*\" >> \"$(dirname \"$0\")/installs\"\n",
        );
    }
    bin
}

struct Run {
    status: i32,
    log: String,
    dir: PathBuf,
}

fn sandbox(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rigger-boot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spec(server: &Server, sha256: Option<String>, gpu: &str) -> BootstrapSpec {
    BootstrapSpec {
        vm: false,
        vast_url: server.url.clone(),
        runner_url: format!("{}/runner.tgz", server.url),
        runner_sha256: sha256,
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

/// Run the rendered onstart like Vast.ai would: `sh`, with the instance's
/// environment and Vast.ai's own variables.
fn run(dir: &Path, spec: &BootstrapSpec, gpus: &str, vast_vars: &[(&str, &str)]) -> Run {
    let rendered = bootstrap::render(spec);
    let onstart = dir.join("onstart.sh");
    std::fs::write(&onstart, &rendered.onstart).unwrap();
    let bin = shims(dir, gpus);
    // The image's environment as PID 1 has it (with secrets that must not leak on).
    let image_env = dir.join("environ");
    std::fs::write(
        &image_env,
        "PATH=/usr/bin\0CUDA_HOME=/usr/local/cuda\0CONTAINER_API_KEY=k-123\0RIGGER_JIT_0=zzz\0",
    )
    .unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg(&onstart)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                bin.display()
            ),
        )
        .env("RIGGER_DIR", dir.join("runner"))
        .env("RIGGER_LOG", dir.join("bootstrap.log"))
        .env("RIGGER_ENV_FROM", &image_env)
        .env("RIGGER_ETC_ENVIRONMENT", dir.join("no-etc-environment"));
    for (k, v) in &rendered.env {
        cmd.env(k, v);
    }
    for (k, v) in vast_vars {
        cmd.env(k, v);
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const VAST: &[(&str, &str)] = &[("CONTAINER_ID", "4242"), ("CONTAINER_API_KEY", "k-123")];

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_and_the_machine_destroys_itself() {
    let dir = sandbox("happy");
    let tgz = runner_tarball(&dir, "job");
    let server = serve(tgz.clone()).await;
    let s = spec(&server, Some(sha256_hex(&tgz)), "RTX 4090");
    let r = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir, &s, "NVIDIA GeForce RTX 4090\\n", VAST)
    })
    .await
    .unwrap();
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("GPUs ok: NVIDIA GeForce RTX 4090"),
        "{}",
        r.log
    );
    assert!(r.log.contains("runner: ran a job"), "{}", r.log);
    assert!(r.log.contains("the runner exited with 0"), "{}", r.log);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.downloads, 1);
    assert_eq!(
        seen.destroys,
        vec![("4242".to_string(), "Bearer k-123".to_string())]
    );
    // The JIT config arrived whole; the runner got the image's environment
    // and the user's env_vars, but no secrets.
    let jit = std::fs::read_to_string(r.dir.join("jit-seen")).unwrap();
    assert_eq!(jit, format!("jit-{}", "x".repeat(700)));
    let env = std::fs::read_to_string(r.dir.join("env-seen")).unwrap();
    assert!(env.contains("CUDA_HOME=/usr/local/cuda"), "{env}");
    assert!(!env.contains("k-123"), "{env}");
    assert!(!env.contains("RIGGER_JIT"), "{env}");
    assert!(
        !r.log.contains("xxxxxxxx"),
        "the JIT config reached the log"
    );
    let setup = std::fs::read_to_string(r.dir.join("runner/.setup_info")).unwrap();
    assert_eq!(setup, r#"[{"detail":"RTX 4090","group":"GPU"}]"#);
    // It said why the runner runs as root here.
    assert!(r.log.contains("running the runner as root"), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_gpu_fails_fast_and_still_destroys() {
    let dir = sandbox("gpu");
    let tgz = runner_tarball(&dir, "job");
    let server = serve(tgz).await;
    let s = spec(&server, None, "RTX 4090");
    let r = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir, &s, "NVIDIA GeForce RTX 3090\\n", VAST)
    })
    .await
    .unwrap();
    assert_eq!(r.status, 1);
    assert!(
        r.log
            .contains("FAILED: expected 1 x RTX 4090, found 1: NVIDIA GeForce RTX 3090"),
        "{}",
        r.log
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.downloads, 0, "it failed before downloading");
    assert_eq!(seen.destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_checksum_is_refused() {
    let dir = sandbox("sum");
    let tgz = runner_tarball(&dir, "job");
    let server = serve(tgz).await;
    let s = spec(&server, Some("0".repeat(64)), "RTX 4090");
    let r = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir, &s, "NVIDIA GeForce RTX 4090\\n", VAST)
    })
    .await
    .unwrap();
    assert_eq!(r.status, 1);
    assert!(r.log.contains("checksum mismatch"), "{}", r.log);
    assert!(!r.dir.join("jit-seen").exists(), "the runner never started");
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_job_within_the_idle_timeout_stops_the_runner() {
    let dir = sandbox("idle");
    let tgz = runner_tarball(&dir, "never");
    let server = serve(tgz).await;
    let s = spec(&server, None, "RTX 4090");
    let r = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir, &s, "NVIDIA GeForce RTX 4090\\n", VAST)
    })
    .await
    .unwrap();
    assert!(
        r.log.contains("no job within 2s: stopping the runner"),
        "{}",
        r.log
    );
    assert_eq!(server.seen.lock().unwrap().destroys.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_per_instance_key_it_calls_rigger_back() {
    let dir = sandbox("callback");
    let tgz = runner_tarball(&dir, "job");
    let server = serve(tgz).await;
    let mut s = spec(&server, None, "RTX 4090");
    s.vm = true;
    s.callback = Some((
        format!("{}/callback", server.url),
        Secret::new("t".repeat(300)),
    ));
    let r = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir, &s, "NVIDIA GeForce RTX 4090\\n", &[])
    })
    .await
    .unwrap();
    assert_eq!(r.status, 0, "{}", r.log);
    let seen = server.seen.lock().unwrap();
    assert!(seen.destroys.is_empty());
    assert_eq!(
        seen.callbacks,
        vec![(
            format!("Bearer {}", "t".repeat(300)),
            "{\"exit_code\":0}".to_string()
        )]
    );
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
