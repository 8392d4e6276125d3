//! Every key `.cirun.yml`, `.cirun.global.yml` and `.access.yml` may hold:
//! its type, whether it is required, and what it means.
//!
//! These tables are the single source of truth: the parser checks types and
//! spots unknown keys with them (`check.rs`), and `rigger schema` prints them
//! as JSON Schema (`schema.rs`), so the two cannot drift apart.

use crate::cloud::vast::gpus::MAX_GPU_MEMORY_GB;

/// The shape a value must have.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Any scalar but null, read as text.
    Str,
    Bool,
    Num(Bound),
    Int(Bound),
    /// One of these words (compared case-insensitively).
    Enum(&'static [&'static str]),
    /// A value, or a list of such values (Cirun's fallback lists).
    OneOrMany(&'static Ty),
    List(&'static Ty),
    /// A mapping from free-form names to values of one type.
    Map(&'static Ty),
    Object(&'static [Key]),
    /// The first alternative whose shape (scalar, list, mapping) fits.
    AnyOf(&'static [Ty]),
    /// Passed through unchecked.
    Any,
}

/// Range a number must be in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Whether 0 itself is allowed; otherwise the number must be above it.
    pub zero: bool,
    /// The highest value allowed. Every number rigger uses has one: a
    /// ceiling no real machine or job reaches, so that an absurd value is an
    /// error that says so, and no arithmetic on a value can overflow.
    pub max: Option<f64>,
}

impl Bound {
    /// Above 0, no ceiling: for keys rigger reads only to warn about them.
    pub const POSITIVE: Bound = Bound {
        zero: false,
        max: None,
    };
    pub const FRACTION: Bound = Bound {
        zero: true,
        max: Some(1.0),
    };

    /// Above 0 and at most `max`.
    pub const fn positive_up_to(max: f64) -> Bound {
        Bound {
            zero: false,
            max: Some(max),
        }
    }

    /// From 0 to `max`.
    pub const fn up_to(max: f64) -> Bound {
        Bound {
            zero: true,
            max: Some(max),
        }
    }

    /// Whether `n` is in range (never for NaN or an infinity).
    pub fn admits(self, n: f64) -> bool {
        n.is_finite() && (n > 0.0 || (self.zero && n == 0.0)) && self.max.is_none_or(|max| n <= max)
    }
}

/// Most idle runners a pool may keep (Cirun's `idle`, which rigger only checks).
const MAX_IDLE_REPLICAS: f64 = 1000.0;
/// Minutes in a week: the longest idle window after a job worth asking for.
const MAX_IDLE_MINUTES: f64 = 10_080.0;
/// GB of disk: 20 TB, more than any Vast.ai host offers one instance.
const MAX_DISK_GB: f64 = 20_000.0;
/// GB of host RAM: 4 TB, more than any Vast.ai host has.
const MAX_RAM_GB: f64 = 4096.0;
/// $/hour for one instance: eight of the dearest GPUs cost a few tens.
const MAX_DPH: f64 = 1000.0;
/// $ for one job.
const MAX_COST: f64 = 100_000.0;
/// Mbit/s: 100 Gbit/s, faster than any host's uplink.
const MAX_INET_MBITS: f64 = 100_000.0;
/// Minutes: GitHub stops a job on a self-hosted runner after 5 days, so a
/// machine living longer only costs money.
const MAX_RUNTIME_MINUTES: f64 = 7200.0;

/// Whether a key is current, or kept only to explain why it does nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Status {
    Current,
    /// Accepted with this warning, and a hint saying what to do instead.
    Legacy {
        warning: &'static str,
        hint: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub status: Status,
    pub doc: &'static str,
}

const fn key(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        required: false,
        status: Status::Current,
        doc,
    }
}

const fn required(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        required: true,
        status: Status::Current,
        doc,
    }
}

const fn legacy(name: &'static str, ty: Ty, warning: &'static str, hint: &'static str) -> Key {
    Key {
        name,
        ty,
        required: false,
        status: Status::Legacy { warning, hint },
        doc: warning,
    }
}

/// Names of the keys in a table, for "did you mean" hints.
pub fn names(keys: &[Key]) -> Vec<&'static str> {
    keys.iter().map(|k| k.name).collect()
}

pub fn find<'a>(keys: &'a [Key], name: &str) -> Option<&'a Key> {
    keys.iter().find(|k| k.name == name)
}

pub const CLOUDS: &[&str] = &[
    "aws",
    "gcp",
    "azure",
    "do",
    "digitalocean",
    "openstack",
    "oracle",
    "vast_ai",
    "on_prem",
];

// ---- .cirun.yml and .cirun.global.yml ----

pub const TOP: &[Key] = &[
    required(
        "runners",
        Ty::List(&Ty::Object(RUNNER)),
        "The runner definitions. A job's `runs-on` labels pick one of them.",
    ),
    key(
        "setup_info",
        Ty::List(&Ty::Object(SETUP_INFO)),
        "Groups of text shown in the job's \"Set up job\" step.",
    ),
    legacy(
        "run_only_when_triggered_by",
        Ty::Str,
        "`run_only_when_triggered_by` was removed from Cirun in 2023 and has no effect; \
         restrict who may start runners with `.access.yml` in the org's `.cirun` repository",
        "remove it, and list who may start runners under `policies:` in `.access.yml` \
         (in the org's `.cirun` repository)",
    ),
];

pub const SETUP_INFO: &[Key] = &[
    required("group", Ty::Str, "Heading of the group."),
    required("detail", Ty::Str, "Text shown under the heading."),
];

pub const RUNNER: &[Key] = &[
    required(
        "name",
        Ty::Str,
        "Name of the definition; `.access.yml` refers to it.",
    ),
    required(
        "cloud",
        Ty::Enum(CLOUDS),
        "Where the machine runs. rigger provisions `vast_ai`.",
    ),
    key(
        "instance_type",
        Ty::OneOrMany(&Ty::Str),
        "Machine size. On vast_ai: `{count}x{GPU}` such as `1xRTX_4090`, `4xA100_SXM`, \
         `8xA100_SXM4_80GB`, or `1xANY` with `extra_config.min_gpu_ram`. A list is tried in order.",
    ),
    key(
        "machine_image",
        Ty::OneOrMany(&Ty::AnyOf(&[Ty::Str, Ty::Object(AZURE_IMAGE)])),
        "Image to boot. On vast_ai: a Docker image (container mode) or a `vastai/kvm` image \
         (VM mode). A list is tried in order.",
    ),
    key(
        "gpu",
        Ty::Str,
        "GPU to attach on GCP or DigitalOcean. Not used on vast_ai (see `instance_type`).",
    ),
    key(
        "preemptible",
        Ty::OneOrMany(&Ty::Bool),
        "Spot / interruptible. On vast_ai: bid instead of on-demand. `[true, false]` tries \
         spot, then on-demand.",
    ),
    key(
        "region",
        Ty::OneOrMany(&Ty::Str),
        "Region or zone. On vast_ai: a two-letter country code such as `US`. A list is tried \
         in order.",
    ),
    key(
        "labels",
        Ty::OneOrMany(&Ty::Str),
        "Labels a job's `runs-on` must match; at least one should start with `cirun-`.",
    ),
    key(
        "extra_config",
        Ty::Object(EXTRA_ALL),
        "Cloud-specific options. See the README for the vast_ai keys and their defaults.",
    ),
    key(
        "idle",
        Ty::Object(IDLE),
        "Warm pool: `schedule` or `usage_based`, not both.",
    ),
    key(
        "vpc",
        Ty::Str,
        "AWS VPC id (seen in real files; undocumented by Cirun).",
    ),
    legacy(
        "workflow",
        Ty::Str,
        "`workflow` has no effect: runners are matched by labels only; remove it",
        "remove `workflow:`; to reserve the runner for some jobs, give it a label only they \
         use in `runs-on`",
    ),
    legacy(
        "count",
        Ty::Int(Bound::POSITIVE),
        "`count` was removed from Cirun and has no effect: every job gets its own machine; remove it",
        "remove `count:`; for more machines, run more jobs (a matrix gives each its own)",
    ),
];

pub const AZURE_IMAGE: &[Key] = &[
    required("publisher", Ty::Str, "Image publisher."),
    required("offer", Ty::Str, "Image offer."),
    required("sku", Ty::Str, "Image SKU."),
    key("version", Ty::Str, "Image version, or `latest`."),
];

pub const IDLE: &[Key] = &[
    key(
        "schedule",
        Ty::List(&Ty::Object(IDLE_WINDOW)),
        "Keep runners idle at these times.",
    ),
    key(
        "usage_based",
        Ty::Object(USAGE_BASED),
        "Keep runners idle for a while after one is used.",
    ),
    key(
        "replicas",
        Ty::Int(Bound::positive_up_to(MAX_IDLE_REPLICAS)),
        "on_prem: number of idle runners.",
    ),
];

pub const IDLE_WINDOW: &[Key] = &[
    required("day", Ty::Str, "`mon`…`sun` or a range such as `mon-fri`."),
    required("time", Ty::Str, "24-hour range such as `9-17`."),
    required(
        "timezone",
        Ty::Str,
        "tz database name such as `Europe/London`.",
    ),
    required(
        "replicas",
        Ty::Int(Bound::positive_up_to(MAX_IDLE_REPLICAS)),
        "Idle runners to keep.",
    ),
];

pub const USAGE_BASED: &[Key] = &[
    required(
        "trigger",
        Ty::Enum(&["runner_allocated"]),
        "What starts the window.",
    ),
    required(
        "replicas",
        Ty::Int(Bound::positive_up_to(MAX_IDLE_REPLICAS)),
        "Idle runners to keep.",
    ),
    required(
        "duration",
        Ty::Int(Bound::positive_up_to(MAX_IDLE_MINUTES)),
        "Minutes to keep them after the trigger.",
    ),
];

// ---- extra_config, per cloud ----

/// Keys documented for every cloud.
pub const EXTRA_GENERAL: &[Key] = &[
    key(
        "env_vars",
        Ty::Map(&Ty::Str),
        "Environment variables for the runner. Not for secrets.",
    ),
    key(
        "provision_via",
        Ty::Enum(&["pull_from_api"]),
        "Let the image fetch the bootstrap script itself (Cirun).",
    ),
    key(
        "run_as",
        Ty::Enum(&["interactive"]),
        "Windows: run the runner in an interactive session.",
    ),
    key("runner_user", Ty::Str, "Windows: the runner's account."),
    key(
        "runner_path",
        Ty::Str,
        "Windows: where the runner is installed.",
    ),
    key("cache", Ty::Bool, "AWS: S3-backed actions cache."),
    key("monitoring", Ty::Bool, "Seen in real files; undocumented."),
    key("cache_debug", Ty::Bool, "Seen in real files; undocumented."),
];

pub const EXTRA_AWS: &[Key] = &[key(
    "BlockDeviceMappings",
    Ty::List(&Ty::Any),
    "EBS volumes (DeviceName, VolumeSize, VolumeType, Throughput, Iops…).",
)];

pub const EXTRA_GCP: &[Key] = &[
    key("baseDisk", Ty::Any, "Root disk: diskSizeGb, diskType."),
    key(
        "additionalDisk",
        Ty::Any,
        "Extra disk: diskSizeGb, diskType.",
    ),
    key("existingDisk", Ty::Any, "Attach an existing disk."),
    key("project_id", Ty::Str, "Project to create the VM in."),
    key(
        "networkInterfaces",
        Ty::List(&Ty::Any),
        "GCE network interfaces.",
    ),
    key("serviceAccounts", Ty::List(&Ty::Any), "Service accounts."),
    key(
        "enableNestedVirtualization",
        Ty::Bool,
        "Nested virtualisation.",
    ),
];

pub const EXTRA_AZURE: &[Key] = &[
    key(
        "storageProfile",
        Ty::Any,
        "storageProfile.osDisk.diskSizeGB.",
    ),
    key("enable_public_ip", Ty::Bool, "Give the VM a public IP."),
    key("licenseType", Ty::Str, "e.g. Windows_Server."),
    key("boot_diagnostics", Ty::Bool, "Boot diagnostics."),
];

pub const EXTRA_ON_PREM: &[Key] = &[
    key(
        "executor",
        Ty::Enum(&["meda", "lume", "docker"]),
        "cirun-agent executor.",
    ),
    key(
        "privileged",
        Ty::Bool,
        "Privileged container (docker-in-docker).",
    ),
    key("docker_socket_mount", Ty::Bool, "Mount the Docker socket."),
    key("gpu", Ty::Str, "Passed to `docker run --gpus`."),
];

/// The `extra_config` of a `vast_ai` runner: Cirun's keys and rigger's own.
pub const EXTRA_VAST: &[Key] = &[
    key(
        "disk_space",
        Ty::Num(Bound::positive_up_to(MAX_DISK_GB)),
        "Disk in GB: the offer must have this much and the instance gets it. Default 30.",
    ),
    key(
        "min_ram",
        Ty::Num(Bound::positive_up_to(MAX_RAM_GB)),
        "Minimum RAM of the whole host in GB (Vast.ai's `cpu_ram`); an instance gets a share in proportion to its GPUs.",
    ),
    key(
        "vm",
        Ty::Bool,
        "VM mode (a full KVM virtual machine) instead of a container. Default false.",
    ),
    key(
        "max_dph",
        Ty::Num(Bound::positive_up_to(MAX_DPH)),
        "rigger: highest price in $/hour for the whole instance.",
    ),
    key(
        "max_cost",
        Ty::Num(Bound::positive_up_to(MAX_COST)),
        "rigger: highest estimated total cost of one job, in $.",
    ),
    key(
        "min_reliability",
        Ty::Num(Bound::FRACTION),
        "rigger: lowest host reliability, 0 to 1. Default 0.95.",
    ),
    key(
        "min_inet_down",
        Ty::Num(Bound::up_to(MAX_INET_MBITS)),
        "rigger: lowest download bandwidth in Mbit/s. Default 100.",
    ),
    key(
        "verified",
        Ty::Bool,
        "rigger: only hosts Vast.ai has verified. Default true.",
    ),
    key(
        "env_vars",
        Ty::Map(&Ty::Str),
        "Environment variables for the runner. Not for secrets.",
    ),
    key(
        "max_runtime",
        Ty::Int(Bound::positive_up_to(MAX_RUNTIME_MINUTES)),
        "rigger: minutes after which the instance is destroyed whatever it is doing; only hosts whose contract lasts that long are rented. Default 360.",
    ),
    key(
        "min_gpu_ram",
        Ty::Num(Bound::positive_up_to(MAX_GPU_MEMORY_GB as f64)),
        "rigger: minimum memory per GPU in GB as sold (a 24 GB L4 reporting 23034 MiB counts); required with `instance_type: NxANY`.",
    ),
    key(
        "min_cuda",
        Ty::Str,
        "rigger: minimum CUDA version the host driver must support, such as `12.4`.",
    ),
];

/// Every `extra_config` key of every cloud, for the schema of a runner whose
/// cloud is not known yet.
pub const EXTRA_ALL: &[Key] = &[
    EXTRA_GENERAL[0],
    EXTRA_GENERAL[1],
    EXTRA_GENERAL[2],
    EXTRA_GENERAL[3],
    EXTRA_GENERAL[4],
    EXTRA_GENERAL[5],
    EXTRA_GENERAL[6],
    EXTRA_GENERAL[7],
    EXTRA_AWS[0],
    EXTRA_GCP[0],
    EXTRA_GCP[1],
    EXTRA_GCP[2],
    EXTRA_GCP[3],
    EXTRA_GCP[4],
    EXTRA_GCP[5],
    EXTRA_GCP[6],
    EXTRA_AZURE[0],
    EXTRA_AZURE[1],
    EXTRA_AZURE[2],
    EXTRA_AZURE[3],
    EXTRA_ON_PREM[0],
    EXTRA_ON_PREM[1],
    EXTRA_ON_PREM[2],
    EXTRA_ON_PREM[3],
    EXTRA_VAST[0],
    EXTRA_VAST[1],
    EXTRA_VAST[2],
    EXTRA_VAST[3],
    EXTRA_VAST[4],
    EXTRA_VAST[5],
    EXTRA_VAST[6],
    EXTRA_VAST[7],
    EXTRA_VAST[9],
    EXTRA_VAST[10],
    EXTRA_VAST[11],
];

// ---- .access.yml ----

pub const ACCESS_TOP: &[Key] = &[
    key("version", Ty::Int(Bound::POSITIVE), "Format version; 1."),
    required(
        "policies",
        Ty::List(&Ty::Object(ACCESS_POLICY)),
        "Who may use a resource.",
    ),
    key(
        "access_control",
        Ty::List(&Ty::Object(ACCESS_CONTROL)),
        "Which policies guard which runner definitions of `.cirun.global.yml`.",
    ),
];

pub const ROLES: &[&str] = &["admin", "maintain", "write", "triage", "read"];

pub const ACCESS_POLICY: &[Key] = &[
    required("id", Ty::Str, "Unique id that `access_control` refers to."),
    key(
        "repo",
        Ty::Str,
        "Repository (name within the org, or owner/name) the policy is for.",
    ),
    key(
        "teams",
        Ty::List(&Ty::Str),
        "Org team slugs whose members may use the resource.",
    ),
    key(
        "roles",
        Ty::List(&Ty::Enum(ROLES)),
        "Repository roles that may use the resource.",
    ),
    key(
        "users",
        Ty::List(&Ty::Str),
        "GitHub logins that may use the resource.",
    ),
    key(
        "users_from_json",
        Ty::Str,
        "URL of a JSON list of logins (seen at conda-forge).",
    ),
    key(
        "pull_request",
        Ty::Bool,
        "Whether pull requests may use the resource. Default false.",
    ),
];

pub const ACCESS_CONTROL: &[Key] = &[
    required(
        "resource",
        Ty::Str,
        "Runner definition name from `.cirun.global.yml`.",
    ),
    required(
        "policies",
        Ty::List(&Ty::Str),
        "Policy ids; any one of them grants access.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_all_holds_every_cloud_key_once() {
        let mut expected: Vec<&str> = [
            EXTRA_GENERAL,
            EXTRA_AWS,
            EXTRA_GCP,
            EXTRA_AZURE,
            EXTRA_ON_PREM,
            EXTRA_VAST,
        ]
        .iter()
        .flat_map(|t| names(t))
        .collect();
        expected.sort();
        expected.dedup();
        let mut all = names(EXTRA_ALL);
        all.sort();
        assert_eq!(all, expected);
    }
}
