//! The simulated Vast.ai's state: the market, the instances rented from it
//! and what they cost. Time comes from an injected clock; an instance's state
//! is advanced by [`World::tick`], never by a timer of its own, so tests step
//! it exactly.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::super::Rng;
use super::book::OfferBook;
use super::hosts::Outage;
use super::limits::{Limiter, Limits};

/// Faults to inject. All probabilities are per event, drawn from the seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Faults {
    /// Share of API requests answered 500.
    pub error_rate: f64,
    /// The next this-many API requests are answered 429.
    pub rate_limit_burst: u32,
    /// Added to every API answer, milliseconds.
    pub latency_ms: u64,
    /// Share of rentals that find the offer taken by someone else.
    pub steal_rate: f64,
    /// How long someone else keeps an offer they took (`steal_rate`)
    /// before it is listed again, as when their rental ends; 0 keeps it
    /// off the market for good. The real market turns over: other renters'
    /// machines come back when their jobs end.
    pub steal_hold_ms: u64,
    /// Share of rentals that are made but answered 502 (an ambiguous create).
    pub ambiguous_create_rate: f64,
    /// Share of rentals that are made but whose 200 answer is cut off
    /// mid-body (the connection drops).
    pub cut_create_rate: f64,
    /// Share of rentals that are made but answered 200 with a body that is
    /// not JSON (a proxy's error page).
    pub garbled_create_rate: f64,
    /// When non-zero, the 429s carry `Retry-After` with this many seconds
    /// (the real API sends none; some proxies in front of it do).
    pub retry_after_s: u64,
    /// Share of instances whose host dies once they run.
    pub die_rate: f64,
    /// Share of instances that never leave `loading`.
    pub stuck_rate: f64,
    /// The next this-many destroys of one instance
    /// (`DELETE /api/v0/instances/{id}/`) are answered `success: false`
    /// and leave the instance as it was.
    pub refuse_destroys: u32,
    /// Share of instances whose container never starts: they stay
    /// `created` with Docker's error in `status_msg` (an image that cannot
    /// be pulled, an OCI runtime failure), as on Vast.ai.
    pub fatal_boot_rate: f64,
    /// The next this-many rentals with a bid find the offer's `min_bid`
    /// risen above it since the search (someone bid higher): 400
    /// `invalid_price`, and the offer keeps its new minimum.
    pub price_rises: u32,
    /// Share of `no_such_ask` refusals answered 200 with `success: false`
    /// (a 2xx can carry `success: false`, reference §4.3).
    pub gone_as_200_rate: f64,
    /// The next this-many destroys are answered 404 with an HTML page by a
    /// proxy in front of the API; the instance lives on.
    pub proxy_404_destroys: u32,
}

impl FromStr for Faults {
    type Err = String;

    /// `error_rate=0.05,rate_limit_burst=3,latency_ms=200,...`
    fn from_str(s: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: write faults as name=value"))?;
            let rate = || -> Result<f64, String> {
                let x: f64 = v
                    .parse()
                    .map_err(|_| format!("`{k}`: `{v}` is not a number"))?;
                if (0.0..=1.0).contains(&x) {
                    Ok(x)
                } else {
                    Err(format!("`{k}`: a rate is between 0 and 1, not {v}"))
                }
            };
            let count = || {
                v.parse::<u64>()
                    .map_err(|_| format!("`{k}`: `{v}` is not a whole number"))
            };
            match k {
                "error_rate" => f.error_rate = rate()?,
                "rate_limit_burst" => f.rate_limit_burst = count()? as u32,
                "latency_ms" => f.latency_ms = count()?,
                "steal_rate" => f.steal_rate = rate()?,
                "steal_hold_ms" => f.steal_hold_ms = count()?,
                "ambiguous_create_rate" => f.ambiguous_create_rate = rate()?,
                "cut_create_rate" => f.cut_create_rate = rate()?,
                "garbled_create_rate" => f.garbled_create_rate = rate()?,
                "retry_after_s" => f.retry_after_s = count()?,
                "die_rate" => f.die_rate = rate()?,
                "stuck_rate" => f.stuck_rate = rate()?,
                "refuse_destroys" => f.refuse_destroys = count()? as u32,
                "fatal_boot_rate" => f.fatal_boot_rate = rate()?,
                "price_rises" => f.price_rises = count()? as u32,
                "gone_as_200_rate" => f.gone_as_200_rate = rate()?,
                "proxy_404_destroys" => f.proxy_404_destroys = count()? as u32,
                other => {
                    return Err(format!(
                        "unknown fault `{other}`; known: error_rate, rate_limit_burst, latency_ms, \
                         steal_rate, steal_hold_ms, ambiguous_create_rate, cut_create_rate, garbled_create_rate, \
                         retry_after_s, die_rate, stuck_rate, refuse_destroys, fatal_boot_rate, \
                         price_rises, gone_as_200_rate, proxy_404_destroys"
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl Faults {
    /// Whether this destroy is one of the `refuse_destroys` (and count it).
    pub fn take_destroy_refusal(&mut self) -> bool {
        let refuse = self.refuse_destroys > 0;
        self.refuse_destroys = self.refuse_destroys.saturating_sub(1);
        refuse
    }

    /// Whether this destroy is one of the `proxy_404_destroys` (and count it).
    pub fn take_proxy_404(&mut self) -> bool {
        let hit = self.proxy_404_destroys > 0;
        self.proxy_404_destroys = self.proxy_404_destroys.saturating_sub(1);
        hit
    }

    /// Whether this rental with a bid is one of the `price_rises` (and count it).
    pub fn take_price_rise(&mut self) -> bool {
        let rise = self.price_rises > 0;
        self.price_rises = self.price_rises.saturating_sub(1);
        rise
    }
}

/// Where a simulated instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Loading,
    Running,
    Exited,
    /// The host stopped answering.
    Offline,
    /// An interruptible instance outbid: stopped (its processes killed, its
    /// disk kept and billed) until its bid is raised above the winner's.
    Outbid,
    Destroyed,
}

impl Phase {
    pub fn actual_status(self) -> Option<&'static str> {
        match self {
            Phase::Loading => Some("loading"),
            Phase::Running => Some("running"),
            // A stopped container reports `exited` (reference §10).
            Phase::Exited | Phase::Outbid => Some("exited"),
            Phase::Offline => Some("offline"),
            Phase::Destroyed => None,
        }
    }
}

/// One rented machine.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: i64,
    pub offer: Map<String, Value>,
    pub label: Option<String>,
    pub image: String,
    pub env: Vec<(String, String)>,
    pub onstart: Option<String>,
    pub args: Vec<String>,
    pub runtype: String,
    pub vm: bool,
    pub disk_gb: f64,
    pub bid: Option<f64>,
    pub api_key: String,
    pub phase: Phase,
    pub created_ms: i64,
    /// When its container last began to start (created, or a stopped
    /// instance scheduled again): it runs one boot delay later.
    pub starts_ms: i64,
    pub running_ms: Option<i64>,
    /// When its process ended (GPU billing stops).
    pub ended_ms: Option<i64>,
    /// When it was destroyed (storage billing stops).
    pub destroyed_ms: Option<i64>,
    pub stuck: bool,
    pub dies: bool,
    pub booted: bool,
    pub log: String,
    pub exit_code: Option<i32>,
    /// Its host is in a transient state (no heartbeat, offline, frozen)
    /// and may come back.
    pub outage: Option<Outage>,
    /// Why its container cannot start (Docker's words), if it cannot.
    pub boot_failure: Option<String>,
    /// GPU dollars of the running spans before the current one (an outbid
    /// instance resumed runs again).
    pub gpu_dollars_before: f64,
    /// The bid that outbid it: a bid at least this resumes it.
    pub outbid_by: Option<f64>,
}

impl Instance {
    /// $/hour for the GPU (the bid when interruptible).
    pub fn gpu_dph(&self) -> f64 {
        self.bid.unwrap_or_else(|| {
            self.offer
                .get("dph_base")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        })
    }

    /// $/hour for storage: `disk × storage_cost / 720` (storage_cost is per month).
    pub fn storage_dph(&self) -> f64 {
        self.disk_gb
            * self
                .offer
                .get("storage_cost")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
            / 720.0
    }

    /// Dollars so far, per second: the GPU while it runs, storage from
    /// creation until destroyed (an exited instance still bills storage).
    pub fn cost_at(&self, now_ms: i64) -> f64 {
        let gone = self.destroyed_ms.unwrap_or(now_ms).min(now_ms);
        let ended = self.ended_ms.unwrap_or(now_ms).min(gone);
        let alive_s = (gone - self.created_ms).max(0) as f64 / 1000.0;
        let running_s = self
            .running_ms
            .map_or(0.0, |r| (ended - r).max(0) as f64 / 1000.0);
        self.gpu_dollars_before
            + (self.gpu_dph() * running_s + self.storage_dph() * alive_s) / 3600.0
    }
}

/// What a booting instance hands to the boot seam.
#[derive(Clone)]
pub struct Booted {
    pub id: i64,
    pub image: String,
    /// The offer's GPUs, for a simulated `nvidia-smi`.
    pub gpu_name: String,
    pub num_gpus: u32,
    pub vm: bool,
    pub runtype: String,
    pub onstart: Option<String>,
    pub args: Vec<String>,
    /// The instance's environment: the renter's variables plus Vast.ai's
    /// own (`GPU_COUNT`, …; in a container also `CONTAINER_ID` and
    /// `CONTAINER_API_KEY`, which a VM does not get).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Booted")
            .field("id", &self.id)
            .field("image", &self.image)
            .finish()
    }
}

/// One line of the ledger: a destroyed instance's bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charge {
    pub instance: i64,
    pub label: Option<String>,
    pub gpu_name: String,
    pub seconds_alive: f64,
    pub dollars: f64,
}

/// Everything the simulated Vast.ai knows.
pub struct World {
    pub offers: OfferBook,
    /// Offers someone else took, and when their rental ends (ms).
    taken_by_others: Vec<(i64, Map<String, Value>)>,
    pub instances: BTreeMap<i64, Instance>,
    /// The account's SSH keys: id, public key, when added (ms).
    pub ssh_keys: Vec<(i64, String, i64)>,
    pub ledger: Vec<Charge>,
    pub faults: Faults,
    pub rng: Rng,
    pub boot_delay_ms: i64,
    next_instance: i64,
    next_key: i64,
    /// Requests answered, by `METHOD path`, for tests and `/sim/state`.
    pub requests: BTreeMap<String, u64>,
    pub limits: Limits,
    pub limiter: Limiter,
}

/// Why a rental failed, in the API's words.
#[derive(Debug, Clone, PartialEq)]
pub enum RentError {
    /// 404 `no_such_ask`.
    NoSuchAsk,
    /// 400 `no_ssh_key_for_vm`.
    NoSshKeyForVm,
    /// 400 `invalid_args`.
    Invalid(String),
    /// 400 `invalid_price`: the bid is below the offer's current minimum.
    InvalidPrice(String),
}

/// What a rental asks for (the create body, read).
#[derive(Debug, Clone, Default)]
pub struct Rental {
    pub image: String,
    pub disk_gb: f64,
    pub label: Option<String>,
    pub env: Vec<(String, String)>,
    pub onstart: Option<String>,
    pub args: Vec<String>,
    pub runtype: String,
    pub vm: bool,
    pub bid: Option<f64>,
}

impl World {
    pub fn new(
        offers: Vec<Map<String, Value>>,
        seed: u64,
        boot_delay_ms: i64,
        faults: Faults,
        limits: Limits,
    ) -> World {
        World {
            offers: OfferBook::new(offers),
            taken_by_others: Vec::new(),
            instances: BTreeMap::new(),
            ssh_keys: Vec::new(),
            ledger: Vec::new(),
            faults,
            rng: Rng::new(seed ^ 0x5EED_FA17),
            boot_delay_ms,
            next_instance: 7_000_000 + (seed % 1000) as i64 * 1000,
            next_key: 1,
            requests: BTreeMap::new(),
            limits,
            limiter: Limiter::default(),
        }
    }

    /// Rent an offer: it leaves the market, and an instance starts loading.
    pub fn rent(
        &mut self,
        offer_id: i64,
        r: Rental,
        now_ms: i64,
    ) -> Result<(i64, String), RentError> {
        let Some(offer) = self.offers.get(offer_id) else {
            return Err(RentError::NoSuchAsk);
        };
        if self.faults.steal_rate > 0.0 && self.rng.chance(self.faults.steal_rate) {
            // Someone else rented it between search and create.
            if let Some(taken) = self.offers.take(offer_id)
                && self.faults.steal_hold_ms > 0
            {
                let until = now_ms.saturating_add(self.faults.steal_hold_ms as i64);
                self.taken_by_others.push((until, taken));
            }
            return Err(RentError::NoSuchAsk);
        }
        if r.vm && self.ssh_keys.is_empty() {
            return Err(RentError::NoSshKeyForVm);
        }
        if r.vm && offer.get("vms_enabled") != Some(&Value::Bool(true)) {
            return Err(RentError::Invalid(format!(
                "offer {offer_id} cannot run VMs"
            )));
        }
        if r.image.is_empty() {
            return Err(RentError::Invalid("image is required".into()));
        }
        if r.disk_gb < 8.0 {
            return Err(RentError::Invalid("disk must be at least 8 GB".into()));
        }
        if let Some(bid) = r.bid {
            if !(0.001..=128.0).contains(&bid) {
                return Err(RentError::Invalid(format!(
                    "price must be between 0.001 and 128, not {bid}"
                )));
            }
            self.bid_floor_holds(offer_id, bid)?;
        }
        let Some(offer) = self.offers.take(offer_id) else {
            return Err(RentError::NoSuchAsk);
        };
        self.next_instance += 1 + self.rng.below(9) as i64;
        let id = self.next_instance;
        let api_key = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        let stuck = self.faults.stuck_rate > 0.0 && self.rng.chance(self.faults.stuck_rate);
        let dies = self.faults.die_rate > 0.0 && self.rng.chance(self.faults.die_rate);
        let fatal =
            self.faults.fatal_boot_rate > 0.0 && self.rng.chance(self.faults.fatal_boot_rate);
        let boot_failure = fatal.then(|| super::hosts::fatal_boot_message(&r.image, &mut self.rng));
        // The host's log says what Docker said, as the boot log rigger keeps.
        let log = match &boot_failure {
            Some(why) => format!("pulling {}\n{why}\n", r.image),
            None => format!("pulling {}\n", r.image),
        };
        self.instances.insert(
            id,
            Instance {
                id,
                offer,
                label: r.label,
                image: r.image,
                env: r.env,
                onstart: r.onstart,
                args: r.args,
                runtype: r.runtype,
                vm: r.vm,
                disk_gb: r.disk_gb,
                bid: r.bid,
                api_key: api_key.clone(),
                phase: Phase::Loading,
                created_ms: now_ms,
                starts_ms: now_ms,
                running_ms: None,
                ended_ms: None,
                destroyed_ms: None,
                stuck,
                dies,
                booted: false,
                log,
                exit_code: None,
                outage: None,
                boot_failure,
                gpu_dollars_before: 0.0,
                outbid_by: None,
            },
        );
        Ok((id, api_key))
    }

    /// Advance every instance to where the clock says it is. Returns the
    /// instances that started running now, for the boot seam.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Booted> {
        let delay = self.boot_delay_ms;
        let mut booted = Vec::new();
        // Other renters' rentals that ended: their offers are listed again.
        let (back, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.taken_by_others)
            .into_iter()
            .partition(|(until, _)| *until <= now_ms);
        self.taken_by_others = held;
        for (_, offer) in back {
            self.offers.put(offer);
        }
        for i in self.instances.values_mut() {
            super::hosts::end_outage_if_due(i, now_ms);
            // A host in an outage moves nothing: no boot, no death.
            let frozen_in_time = i.outage.is_some();
            match i.phase {
                _ if frozen_in_time => {}
                Phase::Loading if i.boot_failure.is_some() => {}
                Phase::Loading if !i.stuck && now_ms >= i.starts_ms + delay => {
                    i.phase = Phase::Running;
                    i.running_ms = Some(i.starts_ms + delay);
                    i.log.push_str("container started\n");
                }
                // A dying host goes offline one boot delay after it started.
                Phase::Running if i.dies && now_ms >= i.running_ms.unwrap_or(0) + delay.max(1) => {
                    i.phase = Phase::Offline;
                    i.ended_ms = Some(now_ms);
                }
                _ => {}
            }
            if i.phase == Phase::Running && !i.booted {
                i.booted = true;
                booted.push(booted_view(i));
            }
        }
        booted
    }

    /// The instance's process ended (the boot seam reports it).
    pub fn exit(&mut self, id: i64, code: i32, now_ms: i64) -> bool {
        match self.instances.get_mut(&id) {
            Some(i) if matches!(i.phase, Phase::Running | Phase::Loading) => {
                i.phase = Phase::Exited;
                i.ended_ms = Some(now_ms);
                i.exit_code = Some(code);
                i.log
                    .push_str(&format!("process exited with status {code}\n"));
                true
            }
            _ => false,
        }
    }

    /// Destroy: billing stops, the ledger gets the bill, GET answers null.
    pub fn destroy(&mut self, id: i64, now_ms: i64) -> bool {
        let Some(i) = self.instances.get_mut(&id) else {
            return false;
        };
        if i.phase == Phase::Destroyed {
            return false;
        }
        if i.ended_ms.is_none() {
            i.ended_ms = Some(now_ms);
        }
        i.destroyed_ms = Some(now_ms);
        let cost = i.cost_at(now_ms);
        // A host whose rental ends lists its machine again, as on Vast.ai;
        // a host that went offline does not come back.
        let relist = (i.phase != Phase::Offline).then(|| i.offer.clone());
        i.outage = None;
        i.phase = Phase::Destroyed;
        self.ledger.push(Charge {
            instance: id,
            label: i.label.clone(),
            gpu_name: i
                .offer
                .get("gpu_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            seconds_alive: (now_ms - i.created_ms).max(0) as f64 / 1000.0,
            dollars: cost,
        });
        if let Some(offer) = relist {
            self.offers.put(offer);
        }
        true
    }

    /// A live (not destroyed) instance.
    pub fn live(&self, id: i64) -> Option<&Instance> {
        self.instances
            .get(&id)
            .filter(|i| i.phase != Phase::Destroyed)
    }

    /// Total spend: destroyed instances' bills plus what live ones cost so far.
    pub fn spend(&self, now_ms: i64) -> f64 {
        let billed: f64 = self.ledger.iter().map(|c| c.dollars).sum();
        let live: f64 = self
            .instances
            .values()
            .filter(|i| i.phase != Phase::Destroyed)
            .map(|i| i.cost_at(now_ms))
            .sum();
        billed + live
    }

    pub fn add_ssh_key(&mut self, key: String, now_ms: i64) -> i64 {
        let id = self.next_key;
        self.next_key += 1;
        self.ssh_keys.push((id, key, now_ms));
        id
    }

    /// An instance row as `GET /instances` returns it (reference §5.3).
    pub fn row(&self, i: &Instance, now_ms: i64) -> Value {
        let o = &i.offer;
        let get = |k: &str| o.get(k).cloned().unwrap_or(Value::Null);
        let running = i.phase == Phase::Running;
        let gpu_dph = i.gpu_dph();
        let storage = i.storage_dph();
        json!({
            "id": i.id,
            "actual_status": super::hosts::actual_status(i),
            "intended_status": if matches!(i.phase, Phase::Exited | Phase::Outbid) { "stopped" } else { "running" },
            "cur_state": if running || i.phase == Phase::Loading { "running" } else { "stopped" },
            "next_state": if running || i.phase == Phase::Loading { "running" } else { "stopped" },
            "status_msg": super::hosts::status_msg(i),
            "label": i.label,
            "machine_id": get("machine_id"),
            "host_id": get("host_id"),
            "bundle_id": get("bundle_id"),
            "gpu_name": get("gpu_name"),
            "num_gpus": get("num_gpus"),
            "gpu_ram": get("gpu_ram"),
            "gpu_totalram": get("gpu_total_ram"),
            "gpu_util": if running { json!(0.0) } else { Value::Null },
            "gpu_temp": Value::Null,
            "gpu_frac": 1.0,
            "cpu_ram": get("cpu_ram"),
            "cpu_cores": get("cpu_cores"),
            "cpu_cores_effective": get("cpu_cores_effective"),
            "cpu_util": 0.0,
            "disk_space": i.disk_gb,
            "disk_usage": 0.0,
            "disk_util": 0.0,
            "dph_base": gpu_dph,
            "dph_total": gpu_dph + storage,
            "is_bid": i.bid.is_some(),
            "min_bid": get("min_bid"),
            "storage_cost": get("storage_cost"),
            "storage_total_cost": storage,
            "start_date": i.created_ms as f64 / 1000.0,
            "end_date": get("end_date"),
            "uptime_mins": i.running_ms.map(|r| ((now_ms - r).max(0) as f64) / 60_000.0),
            "ssh_host": "ssh1.sim.invalid",
            "ssh_port": 20000 + (i.id % 10000),
            "ssh_idx": "1",
            "public_ipaddr": get("public_ipaddr"),
            "local_ipaddrs": "10.0.0.5 172.17.0.2 \n",
            "ports": if running {
                json!({"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40022"}]})
            } else {
                Value::Null
            },
            "direct_port_count": get("direct_port_count"),
            "image_uuid": i.image,
            "image_args": i.args,
            "image_runtype": i.runtype,
            "onstart": i.onstart,
            "extra_env": i.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "template_id": Value::Null,
            "template_hash_id": Value::Null,
            "geolocation": get("geolocation"),
            "verification": get("verification"),
            "reliability2": get("reliability"),
            "inet_up": get("inet_up"),
            "inet_down": get("inet_down"),
            "cuda_max_good": get("cuda_max_good"),
            "driver_version": get("driver_version"),
            "volume_info": [],
            // A string on every instance (OpenAPI `Instance`), Jupyter or not.
            "jupyter_token": format!("{:016x}", (i.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            "vm": i.vm,
            "time_remaining": "",
            "time_remaining_isbid": "",
        })
    }
}

fn booted_view(i: &Instance) -> Booted {
    let mut env = i.env.clone();
    let gpus = i.offer.get("num_gpus").and_then(Value::as_i64).unwrap_or(1);
    if !i.vm {
        // The per-instance key is documented for containers only; a VM's
        // bootstrap must do without it (the reference, §7).
        for (k, v) in [
            ("CONTAINER_ID", i.id.to_string()),
            ("CONTAINER_API_KEY", i.api_key.clone()),
            ("VAST_CONTAINERLABEL", format!("C.{}", i.id)),
        ] {
            env.push((k.to_string(), v));
        }
    }
    for (k, v) in [
        ("GPU_COUNT", gpus.to_string()),
        (
            "PUBLIC_IPADDR",
            i.offer
                .get("public_ipaddr")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
    ] {
        env.push((k.to_string(), v));
    }
    Booted {
        id: i.id,
        image: i.image.clone(),
        gpu_name: i
            .offer
            .get("gpu_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        num_gpus: gpus as u32,
        vm: i.vm,
        runtype: i.runtype.clone(),
        onstart: i.onstart.clone(),
        args: i.args.clone(),
        env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::vast::market::generate;

    fn rental() -> Rental {
        Rental {
            image: "ubuntu:22.04".into(),
            disk_gb: 30.0,
            label: Some("l".into()),
            runtype: "args".into(),
            ..Rental::default()
        }
    }

    #[test]
    fn an_instance_loads_runs_exits_and_is_billed_per_second() {
        let mut w = World::new(
            generate(1, 20, 0.0),
            1,
            10_000,
            Faults::default(),
            Limits::none(),
        );
        let offer = w.offers.iter().next().unwrap()["id"].as_i64().unwrap();
        let (id, _) = w.rent(offer, rental(), 0).unwrap();
        assert_eq!(
            w.rent(offer, rental(), 0),
            Err(RentError::NoSuchAsk),
            "rented once only"
        );
        assert!(w.tick(9_999).is_empty());
        assert_eq!(w.instances[&id].phase, Phase::Loading);
        let booted = w.tick(10_000);
        assert_eq!(booted.len(), 1);
        assert!(
            booted[0]
                .env
                .iter()
                .any(|(k, v)| k == "CONTAINER_ID" && *v == id.to_string())
        );
        assert!(w.tick(20_000).is_empty(), "the boot seam fires once");
        assert!(w.exit(id, 0, 3_610_000));
        let i = w.instances[&id].clone();
        let expected = (i.gpu_dph() * 3600.0 + i.storage_dph() * 3610.0) / 3600.0;
        assert!((i.cost_at(3_610_000) - expected).abs() < 1e-9);
        assert!(w.destroy(id, 4_000_000));
        assert!(!w.destroy(id, 4_000_000));
        assert!(w.live(id).is_none());
        // Storage is billed until destroy, after the process exited.
        let after_exit = expected + i.storage_dph() * 390.0 / 3600.0;
        assert!((w.ledger[0].dollars - after_exit).abs() < 1e-9);
    }

    #[test]
    fn an_offer_someone_else_took_is_listed_again_when_their_rental_ends() {
        let faults: Faults = "steal_rate=1,steal_hold_ms=60000".parse().unwrap();
        let mut w = World::new(generate(1, 20, 0.0), 1, 10_000, faults, Limits::none());
        let offer = w.offers.iter().next().unwrap()["id"].as_i64().unwrap();
        assert_eq!(w.rent(offer, rental(), 0), Err(RentError::NoSuchAsk));
        assert!(w.offers.get(offer).is_none(), "taken by someone else");
        w.tick(59_999);
        assert!(w.offers.get(offer).is_none(), "still theirs");
        w.tick(60_000);
        assert!(w.offers.get(offer).is_some(), "their rental ended");
        // Without a hold, a taken offer stays off the market.
        let mut w = World::new(
            generate(1, 20, 0.0),
            1,
            10_000,
            "steal_rate=1".parse().unwrap(),
            Limits::none(),
        );
        assert_eq!(w.rent(offer, rental(), 0), Err(RentError::NoSuchAsk));
        w.tick(i64::MAX / 2);
        assert!(w.offers.get(offer).is_none());
    }

    #[test]
    fn faults_parse_and_explain_themselves() {
        let f: Faults = "error_rate=0.1, rate_limit_burst=3,latency_ms=20,stuck_rate=1"
            .parse()
            .unwrap();
        assert_eq!(
            (f.error_rate, f.rate_limit_burst, f.latency_ms, f.stuck_rate),
            (0.1, 3, 20, 1.0)
        );
        let mut f: Faults = "refuse_destroys=2".parse().unwrap();
        let refused: Vec<bool> = (0..3).map(|_| f.take_destroy_refusal()).collect();
        assert_eq!(refused, [true, true, false]);
        assert!(
            "error_rate=2"
                .parse::<Faults>()
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(
            "eror_rate=0.1"
                .parse::<Faults>()
                .unwrap_err()
                .contains("known: error_rate")
        );
    }

    #[test]
    fn vms_need_an_ssh_key() {
        let mut w = World::new(
            generate(1, 200, 0.0),
            1,
            0,
            Faults::default(),
            Limits::none(),
        );
        let offer = w.offers.iter().find(|o| o["vms_enabled"] == true).unwrap()["id"]
            .as_i64()
            .unwrap();
        let vm = Rental {
            vm: true,
            ..rental()
        };
        assert_eq!(w.rent(offer, vm.clone(), 0), Err(RentError::NoSshKeyForVm));
        w.add_ssh_key("ssh-ed25519 AAAA".into(), 0);
        assert!(w.rent(offer, vm, 0).is_ok());
        // The per-instance key is a container's: a VM boots without it.
        let booted = w.tick(0);
        let keys: Vec<&str> = booted[0].env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!keys.contains(&"CONTAINER_API_KEY"), "{keys:?}");
        assert!(!keys.contains(&"CONTAINER_ID"), "{keys:?}");
        assert!(keys.contains(&"GPU_COUNT"), "{keys:?}");
    }
}
