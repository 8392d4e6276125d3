//! What happens to a rented machine that its renter does not ask for, as
//! Vast.ai documents it: a host that stops sending heartbeats (`unknown`),
//! disconnects (`offline`) or is frozen for a while and then comes back; a
//! container that cannot start (Docker's error stays in `status_msg`, the
//! instance stays `created`); an interruptible instance outbid (stopped,
//! restarted when its bid is raised, `PUT /api/v0/instances/bid_price/{id}/`:
//! its container starts again and its onstart runs again);
//! a bid below an offer's current minimum (400 `invalid_price`).

use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::super::Rng;
use super::world::{Instance, Phase, RentError, World};

/// A host state that is not the instance's own and may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// No heartbeat from the host.
    Unknown,
    /// The host disconnected from Vast.ai's servers.
    Offline,
    /// Paused with its memory kept.
    Frozen,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Unknown => "unknown",
            HostStatus::Offline => "offline",
            HostStatus::Frozen => "frozen",
        }
    }
}

impl FromStr for HostStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<HostStatus, String> {
        match s {
            "unknown" => Ok(HostStatus::Unknown),
            "offline" => Ok(HostStatus::Offline),
            "frozen" => Ok(HostStatus::Frozen),
            other => Err(format!(
                "`{other}` is not a transient host state; known: unknown, offline, frozen"
            )),
        }
    }
}

/// A host in a transient state until `until_ms` (for good when `None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub status: HostStatus,
    pub until_ms: Option<i64>,
}

/// Docker's own words for a container that cannot start, as Vast.ai shows
/// them in `status_msg` (an image that does not exist, a private one, a
/// runtime that cannot give the container its GPUs).
pub fn fatal_boot_message(image: &str, rng: &mut Rng) -> String {
    let name = image.split(':').next().unwrap_or(image);
    match rng.below(3) {
        0 => format!(
            "Error response from daemon: manifest for {image} not found: manifest unknown: \
             manifest unknown"
        ),
        1 => format!(
            "Error response from daemon: pull access denied for {name}, repository does not \
             exist or may require 'docker login': denied: requested access to the resource is \
             denied"
        ),
        _ => "Error response from daemon: failed to create task for container: failed to \
              create shim task: OCI runtime create failed: runc create failed: unable to start \
              container process: error during container init: error running hook #0: error \
              running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy' \
              nvidia-container-cli: initialization error: nvml error: driver not loaded: unknown"
            .to_string(),
    }
}

/// The host is back once its outage is over.
pub fn end_outage_if_due(i: &mut Instance, now_ms: i64) {
    if let Some(o) = i.outage
        && o.until_ms.is_some_and(|u| now_ms >= u)
    {
        i.outage = None;
        i.log
            .push_str(&format!("host back from {}\n", o.status.as_str()));
    }
}

/// `actual_status` as `GET /instances` shows it.
pub fn actual_status(i: &Instance) -> Option<&'static str> {
    if i.phase == Phase::Destroyed {
        return None;
    }
    if let Some(o) = i.outage {
        return Some(o.status.as_str());
    }
    if i.phase == Phase::Loading && i.boot_failure.is_some() {
        return Some("created");
    }
    i.phase.actual_status()
}

pub fn status_msg(i: &Instance) -> String {
    if let Some(o) = i.outage {
        return format!("host {}: no recent heartbeat", o.status.as_str());
    }
    match i.phase {
        Phase::Loading => match &i.boot_failure {
            Some(why) => why.clone(),
            None => format!("pulling {}", i.image),
        },
        Phase::Running => format!("success, running {}", i.image),
        Phase::Exited => format!("exited with status {}", i.exit_code.unwrap_or(0)),
        Phase::Outbid => "stopped: outbid by a higher bid".to_string(),
        Phase::Offline => "host offline".to_string(),
        Phase::Destroyed => String::new(),
    }
}

/// Why a `change bid` was refused, in the API's words.
#[derive(Debug, Clone, PartialEq)]
pub enum BidError {
    /// 404 `no_such_instance`.
    NoSuchInstance,
    /// 400 `invalid_args`.
    Invalid(String),
}

impl World {
    /// A bid is at least the offer's current `min_bid`. With a
    /// `price_rises` fault the minimum has just risen above it: the offer
    /// keeps the new minimum (a search shows it).
    pub(super) fn bid_floor_holds(&mut self, offer_id: i64, bid: f64) -> Result<(), RentError> {
        if self.faults.take_price_rise()
            && let Some(mut offer) = self.offers.take(offer_id)
        {
            let risen = ((bid * 1.25 + 0.01) * 10_000.0).round() / 10_000.0;
            offer.insert("min_bid".into(), Value::from(risen));
            self.offers.put(offer);
        }
        let floor = self
            .offers
            .get(offer_id)
            .and_then(|o| o.get("min_bid"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if bid < floor {
            return Err(RentError::InvalidPrice(format!(
                "Your bid price of ${bid:.4}/hr is below the current minimum of ${floor:.4}/hr \
                 for this offer."
            )));
        }
        Ok(())
    }

    /// The host of a live instance goes into `status` for `for_ms` (for
    /// good when `None`). False when there is no such live instance.
    pub fn host_goes(
        &mut self,
        id: i64,
        status: HostStatus,
        for_ms: Option<i64>,
        now_ms: i64,
    ) -> bool {
        match self.instances.get_mut(&id) {
            Some(i) if i.phase != Phase::Destroyed => {
                i.outage = Some(Outage {
                    status,
                    until_ms: for_ms.map(|d| now_ms + d.max(0)),
                });
                i.log.push_str(&format!("host {}\n", status.as_str()));
                true
            }
            _ => false,
        }
    }

    /// A higher bid wins the machine: a running interruptible instance is
    /// stopped (its GPU billing stops, its disk bills on). False when there
    /// is no running instance with a bid of that id.
    pub fn outbid(&mut self, id: i64, winning_bid: f64, now_ms: i64) -> bool {
        let Some(i) = self.instances.get_mut(&id) else {
            return false;
        };
        let running = matches!(i.phase, Phase::Running | Phase::Loading);
        if !running || i.bid.is_none_or(|b| b >= winning_bid) {
            return false;
        }
        i.gpu_dollars_before += gpu_dollars_of_span(i, now_ms);
        i.running_ms = None;
        i.ended_ms = Some(now_ms);
        i.phase = Phase::Outbid;
        i.outbid_by = Some(winning_bid);
        i.log.push_str("stopped: outbid\n");
        true
    }

    /// `PUT /api/v0/instances/bid_price/{id}/`: the new bid; an outbid
    /// instance whose bid now beats the winner's runs again.
    pub fn change_bid(&mut self, id: i64, price: f64, now_ms: i64) -> Result<(), BidError> {
        let Some(i) = self
            .instances
            .get_mut(&id)
            .filter(|i| i.phase != Phase::Destroyed)
        else {
            return Err(BidError::NoSuchInstance);
        };
        let gpus = i
            .offer
            .get("num_gpus")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        // NaN is refused too.
        if price.is_nan() || price < 0.001 {
            return Err(BidError::Invalid("Please set a bid price >= 0.001.".into()));
        }
        if price > 32.0 * gpus {
            return Err(BidError::Invalid(format!(
                "Please set a bid price <= {:.1}.",
                32.0 * gpus
            )));
        }
        i.bid = Some(price);
        if i.phase == Phase::Outbid && i.outbid_by.is_none_or(|w| price >= w) {
            // Restarted as Vast.ai restarts a stopped instance
            // (guides_instances_manage-instances.mdx: scheduled, then its
            // container starts again, and an onstart script "runs
            // automatically on container startup"): loading for a boot
            // delay, then running, its onstart run again; its disk kept.
            i.phase = Phase::Loading;
            i.starts_ms = now_ms;
            i.running_ms = None;
            i.ended_ms = None;
            i.exit_code = None;
            i.booted = false;
            i.outbid_by = None;
            i.log
                .push_str("scheduling: bid raised; the container starts again\n");
        }
        Ok(())
    }
}

/// GPU dollars of the current running span, at the current bid.
fn gpu_dollars_of_span(i: &Instance, now_ms: i64) -> f64 {
    let ended = i.ended_ms.unwrap_or(now_ms).min(now_ms);
    let running_s = i
        .running_ms
        .map_or(0.0, |r| (ended - r).max(0) as f64 / 1000.0);
    i.gpu_dph() * running_s / 3600.0
}

#[cfg(test)]
mod tests {
    use super::super::limits::Limits;
    use super::super::market::generate;
    use super::super::world::{Faults, Rental};
    use super::*;

    fn world(faults: Faults) -> World {
        World::new(generate(3, 50, 0.0), 3, 10_000, faults, Limits::none())
    }

    fn rental(bid: Option<f64>) -> Rental {
        Rental {
            image: "nvidia/cuda:12.4.1-runtime-ubuntu22.04".into(),
            disk_gb: 30.0,
            runtype: "args".into(),
            bid,
            ..Rental::default()
        }
    }

    fn status(w: &World, id: i64) -> (Option<&'static str>, String) {
        let i = &w.instances[&id];
        (actual_status(i), status_msg(i))
    }

    #[test]
    fn a_host_without_heartbeat_holds_everything_and_comes_back() {
        let mut w = world(Faults::default());
        let offer = w.offers.iter().next().unwrap()["id"].as_i64().unwrap();
        let (id, _) = w.rent(offer, rental(None), 0).unwrap();
        assert!(w.host_goes(id, HostStatus::Unknown, Some(60_000), 0));
        // Due to boot at 10 s, but its host is not heard from.
        assert!(w.tick(30_000).is_empty());
        assert_eq!(status(&w, id).0, Some("unknown"));
        let booted = w.tick(60_000);
        assert_eq!(booted.len(), 1, "back, and booted");
        assert_eq!(status(&w, id).0, Some("running"));
        // For good: stays offline.
        assert!(w.host_goes(id, HostStatus::Offline, None, 60_000));
        w.tick(10_000_000);
        assert_eq!(status(&w, id).0, Some("offline"));
        assert!(!w.host_goes(999, HostStatus::Frozen, None, 0));
        assert!(
            "asleep"
                .parse::<HostStatus>()
                .unwrap_err()
                .contains("known")
        );
    }

    #[test]
    fn a_container_that_cannot_start_stays_created_with_dockers_words() {
        let mut w = world(Faults {
            fatal_boot_rate: 1.0,
            ..Faults::default()
        });
        let offer = w.offers.iter().next().unwrap()["id"].as_i64().unwrap();
        let (id, _) = w.rent(offer, rental(None), 0).unwrap();
        assert!(w.tick(3_600_000).is_empty(), "never boots");
        let (actual, msg) = status(&w, id);
        assert_eq!(actual, Some("created"));
        assert!(msg.starts_with("Error response from daemon"), "{msg}");
    }

    #[test]
    fn a_bid_below_the_risen_minimum_is_invalid_price_and_the_offer_keeps_it() {
        let mut w = world(Faults {
            price_rises: 1,
            ..Faults::default()
        });
        let o = w.offers.iter().next().unwrap().clone();
        let (offer, floor) = (o["id"].as_i64().unwrap(), o["min_bid"].as_f64().unwrap());
        let refused = w.rent(offer, rental(Some(floor)), 0);
        assert!(
            matches!(refused, Err(RentError::InvalidPrice(_))),
            "{refused:?}"
        );
        let risen = w.offers.get(offer).unwrap()["min_bid"].as_f64().unwrap();
        assert!(risen > floor);
        assert!(
            w.rent(offer, rental(Some(risen)), 0).is_ok(),
            "at the new minimum"
        );
    }

    #[test]
    fn an_outbid_instance_stops_and_boots_again_when_its_bid_is_raised() {
        let mut w = world(Faults::default());
        let o = w.offers.iter().next().unwrap().clone();
        let (offer, floor) = (o["id"].as_i64().unwrap(), o["min_bid"].as_f64().unwrap());
        let (id, _) = w.rent(offer, rental(Some(floor)), 0).unwrap();
        w.tick(10_000);
        assert!(
            !w.outbid(id, floor / 2.0, 20_000),
            "a lower bid wins nothing"
        );
        assert!(w.outbid(id, floor * 2.0, 20_000));
        assert_eq!(status(&w, id).0, Some("exited"));
        let stopped = w.instances[&id].cost_at(20_000);
        // Storage only while stopped.
        let later = w.instances[&id].cost_at(3_620_000);
        let storage = w.instances[&id].storage_dph();
        assert!((later - stopped - storage).abs() < 1e-9);
        assert_eq!(
            w.change_bid(id, floor * 1.5, 3_620_000),
            Ok(()),
            "accepted, still below the winner"
        );
        assert_eq!(status(&w, id).0, Some("exited"));
        assert_eq!(w.change_bid(id, floor * 2.0, 3_620_000), Ok(()));
        // Its container starts again, as a new one does: loading for the
        // boot delay, then running with its onstart run once more.
        assert_eq!(status(&w, id).0, Some("loading"));
        assert!(w.tick(3_625_000).is_empty(), "still starting");
        let again = w.tick(3_630_000);
        assert_eq!(again.len(), 1, "booted again: its onstart runs again");
        assert_eq!(again[0].id, id);
        assert_eq!(status(&w, id).0, Some("running"));
        assert_eq!(
            w.change_bid(id, 0.0, 0),
            Err(BidError::Invalid("Please set a bid price >= 0.001.".into()))
        );
        assert_eq!(w.change_bid(424242, 1.0, 0), Err(BidError::NoSuchInstance));
    }
}
