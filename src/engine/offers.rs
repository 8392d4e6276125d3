//! From a runner definition to ranked offers, over any [`CloudProvider`]:
//! search each fallback candidate, price every offer for this job, and when
//! nothing fits, say which filter emptied the market and what would match.
//! [`Market`] is the engine's `Cloud` port built on a provider; `rigger plan`
//! uses [`plan_candidate`] directly to show its work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use super::ports::{Clock, Cloud, CloudError, OfferSearch, RankedOffer};
use super::rank::{self, Estimate, Priced};
use super::reconcile::{CloudStatus, CloudView};
use crate::cloud::vast::query::{broad_filter, filter_for, search_body};
use crate::cloud::{
    CloudProvider, InstanceStatus, LaunchSpec, Offer, OfferFilter, ProviderInstance,
};
use crate::config::model::{VastCandidate, VastExtra, VastRunner};

/// What one candidate of a definition finds.
#[derive(Debug, Clone, Serialize)]
pub struct CandidatePlan {
    pub index: usize,
    pub instance_type: String,
    pub image: String,
    pub filter: OfferFilter,
    /// The body sent to Vast.ai's search.
    pub query: Value,
    /// Cheapest estimated total first.
    #[serde(skip)]
    pub offers: Vec<Priced>,
    /// Set when no offer fits.
    pub diagnosis: Option<String>,
}

pub fn estimate_for(c: &VastCandidate, extra: &VastExtra, reference_hours: f64) -> Estimate {
    Estimate {
        reference_hours,
        boot_hours: if extra.vm {
            rank::BOOT_HOURS_VM
        } else {
            rank::BOOT_HOURS_CONTAINER
        },
        max_dph: extra.max_dph,
        max_cost: extra.max_cost,
        interruptible: c.preemptible,
    }
}

/// Search and rank one candidate; diagnose an empty result. `max_lifetime`:
/// the controller's `timeouts.max_lifetime`, if it has one.
pub async fn plan_candidate<P: CloudProvider>(
    provider: &P,
    index: usize,
    candidate: &VastCandidate,
    extra: &VastExtra,
    cpu_arch: &str,
    reference_hours: f64,
    max_lifetime: Option<std::time::Duration>,
) -> Result<CandidatePlan, CloudError> {
    let mut plan = search_candidate(
        provider,
        index,
        candidate,
        extra,
        cpu_arch,
        reference_hours,
        max_lifetime,
    )
    .await?;
    if plan.offers.is_empty() {
        let estimate = estimate_for(candidate, extra, reference_hours);
        plan.diagnosis = Some(diagnosis_of(provider, &plan.filter, &estimate).await?);
    }
    Ok(plan)
}

/// Search and rank one candidate, without a diagnosis.
async fn search_candidate<P: CloudProvider>(
    provider: &P,
    index: usize,
    candidate: &VastCandidate,
    extra: &VastExtra,
    cpu_arch: &str,
    reference_hours: f64,
    max_lifetime: Option<std::time::Duration>,
) -> Result<CandidatePlan, CloudError> {
    let filter = filter_for(candidate, extra, cpu_arch, max_lifetime);
    let estimate = estimate_for(candidate, extra, reference_hours);
    let found = provider.search(&filter).await?;
    let offers = rank::rank_offers(found, &estimate);
    Ok(CandidatePlan {
        index,
        instance_type: candidate.instance_type.clone(),
        image: candidate.image.clone(),
        query: search_body(&filter),
        filter,
        offers,
        diagnosis: None,
    })
}

/// The "what would match" search (the same GPUs, no other filter) and what
/// it says.
async fn diagnosis_of<P: CloudProvider>(
    provider: &P,
    filter: &OfferFilter,
    estimate: &Estimate,
) -> Result<String, CloudError> {
    let broad = provider.search(&broad_filter(filter)).await?;
    Ok(diagnose(filter, estimate, &broad))
}

/// How long a candidate's diagnosis answers for it: the market a diagnosis
/// describes changes slowly, and each one is a search out of Vast.ai's ten
/// a minute. The candidate's own search is still made (at most once a
/// minute per definition, `offer_pool::NO_MATCH_MS`): a match is seen at once.
pub const DIAGNOSIS_MS: i64 = 10 * 60_000;

/// Diagnoses kept per (definition, candidate) for [`DIAGNOSIS_MS`].
pub struct Diagnoses {
    clock: Arc<dyn Clock>,
    keep_ms: i64,
    kept: Mutex<HashMap<String, (i64, String)>>,
}

impl Diagnoses {
    pub fn new(clock: Arc<dyn Clock>) -> Diagnoses {
        Diagnoses {
            clock,
            keep_ms: DIAGNOSIS_MS,
            kept: Mutex::default(),
        }
    }

    /// Keeps nothing: every search that finds nothing diagnoses afresh
    /// (the fuzz harness, whose every case is its own market).
    pub fn off() -> Diagnoses {
        Diagnoses {
            keep_ms: 0,
            ..Diagnoses::new(Arc::new(super::ports::SystemClock))
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, String)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str) -> Option<String> {
        let now = self.clock.now_ms();
        let kept = self.kept();
        let (at, d) = kept.get(key)?;
        (now - at < self.keep_ms).then(|| d.clone())
    }

    fn keep(&self, key: String, diagnosis: String) {
        let now = self.clock.now_ms();
        let mut kept = self.kept();
        kept.retain(|_, (at, _)| now - *at < self.keep_ms);
        kept.insert(key, (now, diagnosis));
    }
}

/// One filter, as a person would say it, and as a test on an offer.
struct Step {
    says: String,
    keeps: Box<dyn Fn(&Offer) -> bool>,
    kind: Kind,
}

/// What a diagnosis says of a filter beyond its words.
#[derive(Clone, PartialEq)]
enum Kind {
    /// `region`: the same machines elsewhere are the first suggestion.
    Country,
    /// The GPU maker the runner needs: named only where it leaves an offer
    /// out, and never relaxed (the runner checks its GPUs with the maker's
    /// tool).
    GpuArch,
    /// How long the host's contract must still run: named only where it
    /// leaves an offer out.
    Duration {
        seconds: u64,
    },
    Other,
}

impl Step {
    /// Named in the list of filters applied only where it leaves an offer
    /// out: with it, every diagnosis would say "NVIDIA" and "6 h".
    fn quiet(&self) -> bool {
        matches!(self.kind, Kind::GpuArch | Kind::Duration { .. })
    }
}

/// `21600` → `6 h`, `5400` → `1.5 h`, `1800` → `30 min`.
fn hours(seconds: u64) -> String {
    if seconds < 3_600 {
        return format!("{} min", seconds.div_ceil(60));
    }
    let h = seconds as f64 / 3_600.0;
    if seconds.is_multiple_of(3_600) {
        format!("{h:.0} h")
    } else {
        format!("{h:.1} h")
    }
}

fn steps(f: &OfferFilter, e: &Estimate) -> Vec<Step> {
    let mut s: Vec<Step> = Vec::new();
    let mut add = |says: String, kind: Kind, keeps: Box<dyn Fn(&Offer) -> bool>| {
        s.push(Step { says, keeps, kind })
    };
    // An offer that does not name its maker or its contract's end is not
    // held against it: the cloud's own search filtered on both.
    if let Some(arch) = f.gpu_arch.clone() {
        add(
            format!("with {} GPUs (gpu_arch)", arch.to_uppercase()),
            Kind::GpuArch,
            Box::new(move |o| {
                o.gpu_arch
                    .as_deref()
                    .is_none_or(|a| a.eq_ignore_ascii_case(&arch))
            }),
        );
    }
    if let Some(cc) = f.country.clone() {
        add(
            format!("in {cc}"),
            Kind::Country,
            Box::new(move |o| o.country().eq_ignore_ascii_case(&cc)),
        );
    }
    let disk = f.disk_gb;
    add(
        format!("with disk ≥ {disk} GB"),
        Kind::Other,
        Box::new(move |o| o.disk_gb >= disk),
    );
    if let Some(gb) = f.min_ram_gb {
        add(
            format!("with RAM ≥ {gb} GB"),
            Kind::Other,
            Box::new(move |o| f64::from(o.cpu_ram_mb) >= gb * 1000.0),
        );
    }
    if let Some(mb) = f.min_gpu_ram_mb {
        add(
            // The floor as Vast.ai counts it (MiB less ECC's share), not GB.
            format!("with gpu_ram ≥ {mb} MB per GPU"),
            Kind::Other,
            Box::new(move |o| o.gpu_ram_mb >= mb),
        );
    }
    if f.vm {
        add(
            "able to run VMs".into(),
            Kind::Other,
            Box::new(|o| o.vms_enabled),
        );
    }
    if let Some(v) = f.min_cuda {
        add(
            format!("with CUDA ≥ {v}"),
            Kind::Other,
            Box::new(move |o| o.cuda() >= v),
        );
    }
    let r = f.min_reliability;
    add(
        format!("with reliability ≥ {r}"),
        Kind::Other,
        Box::new(move |o| o.reliability >= r),
    );
    let net = f.min_inet_down;
    add(
        format!("with download ≥ {net} Mbit/s"),
        Kind::Other,
        Box::new(move |o| o.inet_down >= net),
    );
    if f.verified {
        add("verified".into(), Kind::Other, Box::new(|o| o.verified));
    }
    if let Some(seconds) = f.min_duration_s {
        let need = seconds as f64;
        add(
            format!(
                "whose host's contract lasts ≥ {} (duration)",
                hours(seconds)
            ),
            Kind::Duration { seconds },
            Box::new(move |o| o.duration_s.is_none_or(|d| d >= need)),
        );
    }
    if let Some(max) = e.max_dph {
        let e = *e;
        add(
            format!("at ≤ ${max}/h"),
            Kind::Other,
            Box::new(move |o| {
                rank::price(
                    o,
                    &Estimate {
                        max_cost: None,
                        ..e
                    },
                )
                .is_some()
            }),
        );
    }
    if let Some(max) = e.max_cost {
        let e = *e;
        add(
            format!("with an estimated total ≤ ${max}"),
            Kind::Other,
            Box::new(move |o| rank::price(o, &e).is_some()),
        );
    }
    s
}

/// The makers of `offers`, as people write them: `AMD`, `AMD/INTEL`.
fn makers(offers: &[&Offer]) -> String {
    let set: std::collections::BTreeSet<String> = offers
        .iter()
        .filter_map(|o| o.gpu_arch.as_deref())
        .map(str::to_uppercase)
        .collect();
    if set.is_empty() {
        "other makers'".to_string()
    } else {
        set.into_iter().collect::<Vec<_>>().join("/")
    }
}

fn gpu_words(f: &OfferFilter) -> String {
    let models = if f.gpu_names.is_empty() {
        "GPU".to_string()
    } else {
        f.gpu_names.join("/")
    };
    format!("{}× {models}", f.num_gpus)
}

/// Which filter emptied the market, and what would match without it.
/// `broad` is the same GPUs searched without the other filters.
pub fn diagnose(f: &OfferFilter, e: &Estimate, broad: &[Offer]) -> String {
    let gpus = gpu_words(f);
    if broad.is_empty() {
        return format!(
            "0 offers: no {gpus} listed on Vast.ai right now; add a fallback instance_type"
        );
    }
    let steps = steps(f, e);
    let mut left: Vec<&Offer> = broad.iter().collect();
    // The filters applied so far, as the diagnosis names them.
    let mut said: Vec<&str> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let next: Vec<&Offer> = left.iter().copied().filter(|o| (step.keeps)(o)).collect();
        if !step.quiet() || next.len() < left.len() {
            said.push(&step.says);
        }
        if !next.is_empty() {
            left = next;
            continue;
        }
        let mut text = format!(
            "0 offers: {} {gpus} listed, none {}",
            broad.len(),
            said.join(", ")
        );
        // What matches every filter but one.
        let without = |skip: usize| -> Vec<&Offer> {
            broad
                .iter()
                .filter(|o| {
                    steps
                        .iter()
                        .enumerate()
                        .all(|(j, s)| j == skip || (s.keeps)(o))
                })
                .collect()
        };
        let cheapest = |os: &[&Offer]| {
            let any_price = Estimate {
                max_dph: None,
                max_cost: None,
                ..*e
            };
            os.iter()
                .map(|o| rank::price(o, &any_price).map_or(o.dph_total, |p| p.dph))
                .fold(f64::INFINITY, f64::min)
        };
        // The same machine elsewhere is the first thing a person would try.
        let elsewhere = match steps.iter().position(|s| s.kind == Kind::Country) {
            Some(country) => without(country),
            None => Vec::new(),
        };
        let relaxed = without(i);
        if steps[i].kind == Kind::GpuArch {
            // Not a filter to relax: say what is there instead.
            if relaxed.is_empty() {
                text.push_str(&format!(
                    "; only {} GPUs are listed (gpu_arch), and the runner needs {}",
                    makers(&left),
                    f.gpu_arch.as_deref().unwrap_or_default().to_uppercase()
                ));
            } else {
                text.push_str(&format!(
                    "; only {} GPUs (gpu_arch) would match: {}, from ${:.2}/h; \
                     the runner needs {}",
                    makers(&relaxed),
                    relaxed.len(),
                    cheapest(&relaxed),
                    f.gpu_arch.as_deref().unwrap_or_default().to_uppercase()
                ));
            }
        } else if !elsewhere.is_empty() {
            let mut by_country: std::collections::BTreeMap<String, Vec<&Offer>> =
                Default::default();
            for o in &elsewhere {
                by_country
                    .entry(o.country().to_string())
                    .or_default()
                    .push(o);
            }
            let mut groups: Vec<(String, usize, f64)> = by_country
                .into_iter()
                .map(|(c, os)| (c, os.len(), cheapest(&os)))
                .collect();
            groups.sort_by(|a, b| a.2.total_cmp(&b.2));
            let shown: Vec<String> = groups
                .iter()
                .take(3)
                .map(|(c, n, p)| format!("{n} in {c} from ${p:.2}/h"))
                .collect();
            text.push_str(&format!("; {}", shown.join(", ")));
        } else if let (Kind::Duration { seconds }, false) = (&steps[i].kind, relaxed.is_empty()) {
            text.push_str(&format!(
                "; {} would match except that their host's contract ends within {}, \
                 before the machine's max_runtime is up (duration), from ${:.2}/h",
                relaxed.len(),
                hours(*seconds),
                cheapest(&relaxed)
            ));
        } else if !relaxed.is_empty() {
            text.push_str(&format!(
                "; {} would match without \"{}\", from ${:.2}/h",
                relaxed.len(),
                steps[i].says,
                cheapest(&relaxed)
            ));
        } else {
            text.push_str("; relaxing this filter alone would not be enough");
        }
        return text;
    }
    // Each filter leaves something, yet the search found nothing: the
    // market moved between the two searches.
    format!("0 offers: {gpus} offers changed while searching; try again")
}

/// The engine's `Cloud` port over a provider.
pub struct Market<P: CloudProvider> {
    pub provider: P,
    /// The controller's `timeouts.max_lifetime`: with a runner's
    /// `max_runtime`, how long a host's contract must last.
    pub max_lifetime: Option<std::time::Duration>,
    /// What each candidate's market looked like when nothing matched.
    pub diagnoses: Diagnoses,
}

fn status(s: InstanceStatus) -> CloudStatus {
    match s {
        InstanceStatus::Loading => CloudStatus::Loading,
        InstanceStatus::Running => CloudStatus::Running,
        InstanceStatus::Exited => CloudStatus::Exited,
        InstanceStatus::Unreachable => CloudStatus::Unreachable,
        InstanceStatus::BootFailed => CloudStatus::BootFailed,
    }
}

fn view(i: ProviderInstance) -> CloudView {
    CloudView {
        provider_id: i.id,
        label: i.label,
        status: status(i.status),
        detail: i.status_detail,
    }
}

impl<P: CloudProvider> Cloud for Market<P> {
    async fn search(
        &self,
        runner: &VastRunner,
        expected_reference_hours: f64,
    ) -> Result<OfferSearch, CloudError> {
        // Candidates keep the order the user wrote them in (fallbacks):
        // every offer of the first comes before any of the second.
        let mut found = Vec::new();
        let mut empty = Vec::new();
        for (i, c) in runner.candidates.iter().enumerate() {
            let plan = search_candidate(
                &self.provider,
                i,
                c,
                &runner.extra,
                runner.cpu_arch,
                expected_reference_hours,
                self.max_lifetime,
            )
            .await?;
            if plan.offers.is_empty() {
                empty.push((i, c, plan.filter));
                continue;
            }
            found.extend(plan.offers.into_iter().map(|p| RankedOffer {
                offer_id: p.offer.id,
                gpu_name: p.offer.gpu_name.clone(),
                num_gpus: p.offer.num_gpus,
                dph: p.dph,
                estimated_cost: p.total,
                estimated_hours: p.hours,
                location: p.offer.location.clone(),
                reliability: p.offer.reliability,
                candidate: i,
                bid_price: p.bid,
            }));
        }
        if !found.is_empty() {
            return Ok(OfferSearch::Found(found));
        }
        // Nothing matches: say why, with at most one diagnosis search per
        // attempt (the others' come on later attempts), each candidate's
        // kept for DIAGNOSIS_MS.
        let mut searched = false;
        let mut diagnoses = Vec::new();
        for (i, c, filter) in empty {
            let key = format!("{runner:?}|{i}");
            let d = match self.diagnoses.get(&key) {
                Some(d) => d,
                None if !searched => {
                    searched = true;
                    let estimate = estimate_for(c, &runner.extra, expected_reference_hours);
                    let d = diagnosis_of(&self.provider, &filter, &estimate).await?;
                    self.diagnoses.keep(key, d.clone());
                    d
                }
                None => "0 offers (which filter emptied the market is looked up on a later \
                         attempt: one such search at a time, within Vast.ai's search limit)"
                    .to_string(),
            };
            diagnoses.push(if runner.candidates.len() > 1 {
                format!("{}: {d}", c.instance_type)
            } else {
                d
            });
        }
        Ok(OfferSearch::NoMatch {
            diagnosis: diagnoses.join("; "),
        })
    }

    async fn create(&self, spec: &LaunchSpec) -> Result<String, CloudError> {
        self.provider.launch(spec).await
    }

    async fn find(&self, label: &str) -> Result<Option<CloudView>, CloudError> {
        Ok(self
            .provider
            .find_label(label)
            .await?
            .into_iter()
            .next()
            .map(view))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<CloudView>, CloudError> {
        Ok(self
            .provider
            .list(prefix)
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    async fn destroy(&self, provider_id: &str) -> Result<(), CloudError> {
        self.provider.destroy(provider_id).await
    }

    async fn logs(&self, provider_id: &str) -> Result<String, CloudError> {
        self.provider.logs(provider_id).await
    }

    fn create_slot(&self) -> Result<(), CloudError> {
        self.provider.create_slot()
    }

    fn release_create_slot(&self) {
        self.provider.release_create_slot();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: i64, loc: &str, disk: f64, dph: f64) -> Offer {
        Offer {
            id,
            gpu_name: "RTX 4090".into(),
            num_gpus: 1,
            gpu_ram_mb: 24_564,
            cpu_ram_mb: 64_000,
            disk_gb: disk,
            dph_total: dph,
            min_bid: dph / 2.0,
            reliability: 0.99,
            inet_down: 500.0,
            location: loc.into(),
            cuda_max_good: 12.4,
            verified: true,
            vms_enabled: false,
            dlperf: 48.0,
            gpu_arch: None,
            duration_s: None,
        }
    }

    fn filter() -> OfferFilter {
        OfferFilter {
            num_gpus: 1,
            gpu_names: vec!["RTX 4090".into()],
            min_gpu_ram_mb: None,
            disk_gb: 200.0,
            min_ram_gb: None,
            country: Some("US".into()),
            vm: false,
            min_cuda: None,
            min_reliability: 0.95,
            min_inet_down: 100.0,
            verified: true,
            interruptible: false,
            max_dph: None,
            limit: 64,
            cpu_arch: "amd64".into(),
            gpu_arch: Some("nvidia".into()),
            min_duration_s: None,
        }
    }

    fn est() -> Estimate {
        Estimate {
            reference_hours: 1.0,
            boot_hours: 0.0,
            max_dph: None,
            max_cost: None,
            interruptible: false,
        }
    }

    #[test]
    fn the_diagnosis_names_the_filter_and_what_would_match() {
        let broad = vec![
            offer(1, "Texas, US", 100.0, 0.30),
            offer(2, "Quebec, CA", 500.0, 0.38),
            offer(3, "Ontario, CA", 500.0, 0.45),
            offer(4, "Bavaria, DE", 300.0, 0.41),
        ];
        let d = diagnose(&filter(), &est(), &broad);
        assert_eq!(
            d,
            "0 offers: 4 1× RTX 4090 listed, none in US, with disk ≥ 200 GB; \
             2 in CA from $0.38/h, 1 in DE from $0.41/h"
        );
    }

    #[test]
    fn a_price_cap_is_named_with_the_cheapest_alternative() {
        let broad = vec![
            offer(1, "Texas, US", 500.0, 0.9),
            offer(2, "Texas, US", 500.0, 0.7),
        ];
        let e = Estimate {
            max_dph: Some(0.5),
            ..est()
        };
        let d = diagnose(&filter(), &e, &broad);
        assert!(d.contains("none in US, with disk ≥ 200 GB, with reliability ≥ 0.95, with download ≥ 100 Mbit/s, verified, at ≤ $0.5/h"), "{d}");
        assert!(
            d.ends_with("2 would match without \"at ≤ $0.5/h\", from $0.70/h"),
            "{d}"
        );
    }

    fn any_gpu() -> OfferFilter {
        OfferFilter {
            gpu_names: Vec::new(),
            country: None,
            min_duration_s: Some(21_600),
            ..filter()
        }
    }

    fn amd(id: i64, dph: f64) -> Offer {
        Offer {
            gpu_name: "RX 7900 XTX".into(),
            gpu_arch: Some("amd".into()),
            ..offer(id, "Texas, US", 500.0, dph)
        }
    }

    #[test]
    fn only_amd_gpus_are_named_as_such() {
        let broad = vec![amd(1, 0.20), amd(2, 0.10)];
        let d = diagnose(&any_gpu(), &est(), &broad);
        assert_eq!(
            d,
            "0 offers: 2 1× GPU listed, none with NVIDIA GPUs (gpu_arch); only AMD GPUs \
             (gpu_arch) would match: 2, from $0.10/h; the runner needs NVIDIA"
        );
        // AMD hosts that fail another filter too.
        let small = vec![Offer {
            disk_gb: 10.0,
            ..amd(3, 0.1)
        }];
        let d = diagnose(&any_gpu(), &est(), &small);
        assert!(
            d.ends_with("; only AMD GPUs are listed (gpu_arch), and the runner needs NVIDIA"),
            "{d}"
        );
    }

    /// The maker and the contract are named only where they leave an
    /// offer out; hosts that fail them are never suggested.
    #[test]
    fn the_maker_and_the_contract_are_named_only_where_they_count() {
        let nvidia = Offer {
            gpu_arch: Some("nvidia".into()),
            duration_s: Some(30.0 * 86_400.0),
            ..offer(1, "Texas, US", 100.0, 0.30)
        };
        let d = diagnose(&any_gpu(), &est(), &[nvidia.clone(), amd(2, 0.05)]);
        assert_eq!(
            d,
            "0 offers: 2 1× GPU listed, none with NVIDIA GPUs (gpu_arch), with disk ≥ 200 GB; \
             1 would match without \"with disk ≥ 200 GB\", from $0.30/h"
        );
        let short = Offer {
            duration_s: Some(7_200.0),
            disk_gb: 500.0,
            ..nvidia
        };
        let d = diagnose(&any_gpu(), &est(), &[short]);
        assert_eq!(
            d,
            "0 offers: 1 1× GPU listed, none with disk ≥ 200 GB, with reliability ≥ 0.95, \
             with download ≥ 100 Mbit/s, verified, whose host's contract lasts ≥ 6 h \
             (duration); 1 would match except that their host's contract ends within 6 h, \
             before the machine's max_runtime is up (duration), from $0.30/h"
        );
    }

    #[test]
    fn a_contract_is_said_in_hours_or_minutes() {
        assert_eq!(
            [hours(21_600), hours(5_400), hours(1_800), hours(90)],
            ["6 h", "1.5 h", "30 min", "2 min"]
        );
    }

    #[test]
    fn an_empty_market_says_so() {
        let d = diagnose(&filter(), &est(), &[]);
        assert!(d.contains("no 1× RTX 4090 listed"), "{d}");
    }
}
