//! The simulated Vast.ai's boot seam made real: a booted instance runs the
//! onstart it was created with, by `sh`, in a sandbox directory, with the
//! instance's environment and Vast.ai's own variables (a VM's only in its
//! sandbox's `/etc/environment`). Its output streams into Vast.ai's log, and
//! destroying the instance kills it. Only what a sandbox
//! cannot do is shimmed on `PATH`: `nvidia-smi` (reporting the offer's
//! GPUs), `useradd`/`adduser` and `id runner` (no users are created, so the
//! runner runs as root with `RUNNER_ALLOW_RUNASROOT`, and no `sudo` is
//! needed), and the package managers (which install nothing). Everything
//! else — curl to the simulated GitHub and Vast.ai, the checksum, tar, the
//! runner and its job-started hook, the self-destroy — is real.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::vast::{Booted, Phase, SimVast};

/// Runs booted instances in sandboxes under `root`.
#[derive(Clone)]
pub struct Machines {
    root: PathBuf,
    vast: SimVast,
    /// Notified with (instance id, exit status) when a machine's script ends.
    on_exit: Option<Arc<dyn Fn(i64, i32) + Send + Sync>>,
    /// Shims that replace the default ones (name, script): a host whose
    /// `nvidia-smi` hangs, or reports other GPUs than the offer said.
    shims: Vec<(String, String)>,
}

fn write_exec(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

impl Machines {
    pub fn new(root: PathBuf, vast: SimVast) -> Machines {
        Machines {
            root,
            vast,
            on_exit: None,
            shims: Vec::new(),
        }
    }

    /// Replace a default shim on every machine.
    pub fn shim(mut self, name: &str, script: &str) -> Machines {
        self.shims.push((name.to_string(), script.to_string()));
        self
    }

    pub fn on_exit(mut self, f: Arc<dyn Fn(i64, i32) + Send + Sync>) -> Machines {
        self.on_exit = Some(f);
        self
    }

    /// Install as the simulated Vast.ai's boot seam.
    pub fn install(self) {
        let vast = self.vast.clone();
        vast.on_boot(Arc::new(move |b| {
            let m = self.clone();
            std::thread::spawn(move || m.run(b));
        }));
    }

    fn shims(&self, dir: &Path, b: &Booted) -> std::io::Result<PathBuf> {
        let bin = dir.join("shims");
        std::fs::create_dir_all(&bin)?;
        let line = format!("NVIDIA {}\\n", b.gpu_name);
        write_exec(
            &bin.join("nvidia-smi"),
            &format!(
                "#!/bin/sh\nprintf '{}'\n",
                line.repeat(b.num_gpus.max(1) as usize)
            ),
        )?;
        write_exec(&bin.join("useradd"), "#!/bin/sh\nexit 1\n")?;
        write_exec(&bin.join("adduser"), "#!/bin/sh\nexit 1\n")?;
        write_exec(
            &bin.join("id"),
            "#!/bin/sh\n[ \"$1\" = runner ] && exit 1\nexec /usr/bin/id \"$@\"\n",
        )?;
        for pm in ["apt-get", "dnf", "yum", "apk"] {
            write_exec(&bin.join(pm), "#!/bin/sh\nexit 0\n")?;
        }
        for (name, script) in &self.shims {
            write_exec(&bin.join(name), script)?;
        }
        Ok(bin)
    }

    /// Run one machine to its end (blocking: call from a thread).
    pub fn run(&self, b: Booted) {
        let dir = self.root.join(format!("instance-{}", b.id));
        let code = match self.run_script(&dir, &b) {
            Ok(code) => code,
            Err(e) => {
                self.vast
                    .append_log(b.id, &format!("the machine could not start: {e}\n"));
                127
            }
        };
        self.vast.exit(b.id, code);
        if let Some(f) = &self.on_exit {
            f(b.id, code);
        }
    }

    fn run_script(&self, dir: &Path, b: &Booted) -> std::io::Result<i32> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let bin = self.shims(dir, b)?;
        // Container mode with the `args` run type: `onstart` is the
        // entrypoint and `args` its argv; otherwise `onstart` is the script.
        let mut cmd = if b.runtype == "args" {
            let mut c = Command::new(b.onstart.as_deref().unwrap_or("/bin/sh"));
            c.args(&b.args);
            c
        } else {
            let script = dir.join("onstart.sh");
            std::fs::write(&script, b.onstart.as_deref().unwrap_or(""))?;
            let mut c = Command::new("sh");
            c.arg(script);
            c
        };
        cmd.current_dir(dir)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    bin.display()
                ),
            )
            .env("HOME", dir)
            .env("RIGGER_DIR", dir.join("runner"))
            .env("RIGGER_LOG", dir.join("bootstrap.log"))
            .env("RIGGER_SUDOERS_DIR", dir.join("sudoers.d"))
            .env("RIGGER_ETC_ENVIRONMENT", dir.join("etc-environment"));
        if b.vm {
            // A VM's variables are in /etc/environment only, as Vast.ai
            // writes them (quoted); its processes do not inherit them.
            let etc: String = b
                .env
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                .collect();
            std::fs::write(dir.join("etc-environment"), etc)?;
        } else {
            // What the image's PID 1 has, for the script to hand to the runner.
            let mut environ = b
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\0");
            environ.push_str("\0CUDA_HOME=/usr/local/cuda\0");
            std::fs::write(dir.join("environ"), environ)?;
            cmd.env("RIGGER_ENV_FROM", dir.join("environ"));
            for (k, v) in &b.env {
                cmd.env(k, v);
            }
        }
        // Its own process group: destroying the instance kills all of it,
        // as destroying a container does.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        // Vast.ai's log grows as the machine writes (a hung boot shows how
        // far it got); lines are appended as they come.
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|out| {
            let vast = self.vast.clone();
            let id = b.id;
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    match line {
                        Ok(l) => vast.append_log(id, &format!("{l}\n")),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if matches!(self.vast.phase(b.id), None | Some(Phase::Destroyed)) {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for r in readers {
            let _ = r.join();
        }
        Ok(status.code().unwrap_or(137))
    }
}
