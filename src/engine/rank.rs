//! Offers ranked by estimated total cost: what the job will cost on each
//! offer, not its hourly price. A $0.90/h GPU that finishes in 2 h ($1.80)
//! beats a $0.30/h one that takes 8 h ($2.40).

use std::collections::HashMap;

use crate::cloud::Offer;
use crate::cloud::vast::gpus;

/// Vast.ai's `dlperf` score of one RTX 3090 (the reference GPU, speed 1.0),
/// roughly; used only for models rigger has no speed figure for.
pub const REFERENCE_DLPERF_PER_GPU: f64 = 30.0;

/// Booting a container (image pull, runner download, registration) is
/// billed; these are typical figures, counted into every estimate.
pub const BOOT_HOURS_CONTAINER: f64 = 5.0 / 60.0;
pub const BOOT_HOURS_VM: f64 = 10.0 / 60.0;

/// An interruptible bid is the host's floor plus this margin, so the first
/// competing bid does not stop the job at once.
pub const BID_MARGIN: f64 = 1.10;

/// What the caller knows about the job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Expected hours on the reference GPU (RTX 3090).
    pub reference_hours: f64,
    pub boot_hours: f64,
    pub max_dph: Option<f64>,
    pub max_cost: Option<f64>,
    pub interruptible: bool,
}

/// One offer with its price for this job.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub offer: Offer,
    /// $/hour rigger will pay: `dph_total`, or the bid.
    pub dph: f64,
    pub bid: Option<f64>,
    /// Expected job hours on this offer's GPU.
    pub hours: f64,
    /// $ for the job, boot included.
    pub total: f64,
}

/// Relative speed of an offer's GPU (RTX 3090 = 1.0).
pub fn speed(offer: &Offer) -> f64 {
    speed_with(offer, known_speed(&offer.gpu_name))
}

fn known_speed(gpu_name: &str) -> Option<f64> {
    gpus::by_vast_name(gpu_name).and_then(|g| g.relative_speed)
}

/// `known`: the catalog's figure for the offer's model, if any.
fn speed_with(offer: &Offer, known: Option<f64>) -> f64 {
    if let Some(s) = known {
        return s;
    }
    let per_gpu = offer.dlperf / f64::from(offer.num_gpus.max(1));
    if per_gpu > 0.0 {
        (per_gpu / REFERENCE_DLPERF_PER_GPU).clamp(0.05, 10.0)
    } else {
        // Nothing known: assume the reference, neither favoured nor punished.
        1.0
    }
}

/// The price of one offer, or `None` when a cap rules it out.
pub fn price(offer: &Offer, e: &Estimate) -> Option<Priced> {
    let q = quote(offer, e, speed(offer))?;
    Some(Priced {
        offer: offer.clone(),
        dph: q.dph,
        bid: q.bid,
        hours: q.hours,
        total: q.total,
    })
}

/// An offer's price for the job, before it is paired with the offer.
#[derive(Debug, Clone, Copy)]
struct Quote {
    /// The offer's position in the searched slice.
    index: usize,
    dph: f64,
    bid: Option<f64>,
    hours: f64,
    total: f64,
}

fn quote(offer: &Offer, e: &Estimate, speed: f64) -> Option<Quote> {
    let (dph, bid) = if e.interruptible {
        // Bid the host's floor plus a margin, but never over the cap.
        let bid = offer.min_bid * BID_MARGIN;
        let bid = match e.max_dph {
            Some(max) if bid > max && offer.min_bid <= max => max,
            _ => bid,
        };
        (bid, Some(bid))
    } else {
        (offer.dph_total, None)
    };
    if !(dph.is_finite() && dph > 0.0) || e.max_dph.is_some_and(|max| dph > max) {
        return None;
    }
    // Multi-GPU offers are not assumed to finish sooner: few CI jobs scale
    // across GPUs, and the history that set `reference_hours` used the same
    // definition.
    let hours = e.reference_hours / speed;
    let total = dph * (hours + e.boot_hours);
    if e.max_cost.is_some_and(|max| total > max) {
        return None;
    }
    Some(Quote {
        index: 0,
        dph,
        bid,
        hours,
        total,
    })
}

/// One offer's place in a ranking: its index in the searched slice and its
/// price for the job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub dph: f64,
    pub bid: Option<f64>,
    pub hours: f64,
    pub total: f64,
}

/// The order to try `offers` in: cheapest total first; ties go to the more
/// reliable host, then the faster network, then the lower offer id (so the
/// order is always the same). Offers over a cap are left out. Only small keys
/// are sorted, and each model's speed is looked up once: a search returns
/// thousands of offers of a few dozen models.
pub fn rank(offers: &[Offer], e: &Estimate) -> Vec<Ranked> {
    let mut speeds: HashMap<&str, Option<f64>> = HashMap::new();
    let mut quotes: Vec<Quote> = Vec::with_capacity(offers.len());
    // (total, reliability, bandwidth, id, position in `quotes`) as integers
    // that sort in the wanted order: sorting plain integers is the cheapest
    // sort there is.
    let mut keys: Vec<(u64, u64, u64, i64, u32)> = Vec::with_capacity(offers.len());
    for (i, o) in offers.iter().enumerate() {
        let known = *speeds
            .entry(o.gpu_name.as_str())
            .or_insert_with(|| known_speed(&o.gpu_name));
        let Some(q) = quote(o, e, speed_with(o, known)) else {
            continue;
        };
        keys.push((
            ascending(q.total),
            !ascending(o.reliability),
            !ascending(o.inet_down),
            o.id,
            quotes.len() as u32,
        ));
        quotes.push(Quote { index: i, ..q });
    }
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| {
            let q = quotes[k.4 as usize];
            Ranked {
                index: q.index,
                dph: q.dph,
                bid: q.bid,
                hours: q.hours,
                total: q.total,
            }
        })
        .collect()
}

/// A float as an integer with the same order (IEEE 754 total order).
fn ascending(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// [`rank`], with each offer moved into its priced entry.
pub fn rank_offers(mut offers: Vec<Offer>, e: &Estimate) -> Vec<Priced> {
    rank(&offers, e)
        .into_iter()
        .map(|r| Priced {
            // Each index appears once; take leaves an empty offer behind.
            offer: std::mem::take(&mut offers[r.index]),
            dph: r.dph,
            bid: r.bid,
            hours: r.hours,
            total: r.total,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn offer(id: i64, gpu: &str, dph: f64) -> Offer {
        Offer {
            id,
            gpu_name: gpu.into(),
            num_gpus: 1,
            gpu_ram_mb: 24_000,
            cpu_ram_mb: 64_000,
            disk_gb: 100.0,
            dph_total: dph,
            min_bid: dph / 2.0,
            reliability: 0.99,
            inet_down: 500.0,
            location: "Texas, US".into(),
            cuda_max_good: 12.4,
            verified: true,
            vms_enabled: false,
            dlperf: 30.0,
            ..Default::default()
        }
    }

    fn est(hours: f64) -> Estimate {
        Estimate {
            reference_hours: hours,
            boot_hours: 0.0,
            max_dph: None,
            max_cost: None,
            interruptible: false,
        }
    }

    #[test]
    fn total_cost_beats_hourly_price() {
        // 8 h on the reference GPU: an H100 (3.3×) at $2.00/h costs $4.85,
        // an RTX 3060 (0.5×) at $0.30/h takes 16 h and costs $4.80,
        // an RTX 4090 (1.6×) at $0.45/h takes 5 h and costs $2.25.
        let offers = [
            offer(1, "H100 SXM", 2.0),
            offer(2, "RTX 3060", 0.30),
            offer(3, "RTX 4090", 0.45),
        ];
        let ranked = rank_offers(offers.to_vec(), &est(8.0));
        let ids: Vec<i64> = ranked.iter().map(|p| p.offer.id).collect();
        assert_eq!(ids, vec![3, 2, 1]);
        assert!((ranked[0].hours - 5.0).abs() < 1e-9);
        assert!((ranked[0].total - 2.25).abs() < 1e-9);
    }

    #[test]
    fn boot_overhead_is_billed() {
        let mut e = est(1.0);
        e.boot_hours = 0.5;
        let p = price(&offer(1, "RTX 3090", 1.0), &e).unwrap();
        assert!((p.total - 1.5).abs() < 1e-9);
    }

    #[test]
    fn caps_filter_before_ranking() {
        let offers = [offer(1, "RTX 3090", 1.2), offer(2, "RTX 3090", 0.9)];
        let mut e = est(2.0);
        e.max_dph = Some(1.0);
        assert_eq!(rank(&offers, &e).len(), 1);
        e.max_dph = None;
        e.max_cost = Some(2.0); // 2 h × $1.20 = $2.40 is over, $1.80 is not
        let r = rank_offers(offers.to_vec(), &e);
        assert_eq!(r.iter().map(|p| p.offer.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn ties_break_on_reliability_then_bandwidth_then_id() {
        let mut a = offer(5, "RTX 3090", 1.0);
        let mut b = offer(4, "RTX 3090", 1.0);
        let c = offer(3, "RTX 3090", 1.0);
        a.reliability = 0.999;
        b.inet_down = 900.0;
        let r = rank_offers(vec![c, b, a], &est(1.0));
        assert_eq!(
            r.iter().map(|p| p.offer.id).collect::<Vec<_>>(),
            vec![5, 4, 3]
        );
    }

    #[test]
    fn unknown_gpus_use_dlperf() {
        let mut o = offer(1, "Some Future GPU", 1.0);
        o.dlperf = 60.0;
        assert!((speed(&o) - 2.0).abs() < 1e-9);
        o.num_gpus = 2;
        assert!((speed(&o) - 1.0).abs() < 1e-9, "dlperf is per machine");
        o.dlperf = 0.0;
        assert_eq!(speed(&o), 1.0);
    }

    #[test]
    fn bids_start_above_the_floor_and_respect_the_cap() {
        let mut e = est(1.0);
        e.interruptible = true;
        let o = offer(1, "RTX 3090", 1.0); // min_bid 0.50
        let p = price(&o, &e).unwrap();
        assert!((p.dph - 0.55).abs() < 1e-9);
        assert_eq!(p.bid, Some(p.dph));
        e.max_dph = Some(0.52);
        assert_eq!(
            price(&o, &e).unwrap().dph,
            0.52,
            "capped, still above the floor"
        );
        e.max_dph = Some(0.4);
        assert!(price(&o, &e).is_none(), "the floor itself is over the cap");
    }

    /// The specification's total, written out again without `rank`'s code:
    /// $/hour × (expected hours on the reference GPU / relative speed + boot
    /// overhead), the speed from the catalog or else the offer's `dlperf`,
    /// and `None` over a cap.
    fn brute_total(o: &Offer, e: &Estimate) -> Option<(f64, f64)> {
        let speed = match gpus::CATALOG.iter().find(|g| g.vast_name == o.gpu_name) {
            Some(g) => g.relative_speed.expect("every model has a figure"),
            None if o.dlperf > 0.0 => {
                (o.dlperf / f64::from(o.num_gpus) / REFERENCE_DLPERF_PER_GPU).clamp(0.05, 10.0)
            }
            None => 1.0,
        };
        let dph = if e.interruptible {
            let wanted = o.min_bid * 1.10;
            match e.max_dph {
                Some(cap) if wanted > cap && o.min_bid <= cap => cap,
                _ => wanted,
            }
        } else {
            o.dph_total
        };
        if e.max_dph.is_some_and(|cap| dph > cap) {
            return None;
        }
        let total = dph * (e.reference_hours / speed + e.boot_hours);
        if e.max_cost.is_some_and(|cap| total > cap) {
            return None;
        }
        Some((dph, total))
    }

    /// Whether `a` should be tried before `b`: cheaper total, then more
    /// reliable, then faster network, then lower id.
    fn before(a: (&Offer, f64), b: (&Offer, f64)) -> bool {
        let (a, at) = a;
        let (b, bt) = b;
        if at != bt {
            return at < bt;
        }
        if a.reliability != b.reliability {
            return a.reliability > b.reliability;
        }
        if a.inet_down != b.inet_down {
            return a.inet_down > b.inet_down;
        }
        a.id < b.id
    }

    /// On random markets `rank`'s order is the brute-force order: each place
    /// holds the best of the offers not yet placed, ties included, and
    /// nothing over a cap is kept. Prices, speeds, reliabilities and
    /// bandwidths come from small sets so that ties are common.
    #[test]
    fn the_order_is_the_brute_force_order_on_random_markets() {
        let models: Vec<&str> = ["RTX 3090", "RTX 4090", "A100 SXM4", "A100X", "H100 SXM"]
            .into_iter()
            .chain(["Mystery GPU", "Another GPU"])
            .collect();
        let mut ties = (0, 0);
        for seed in 0..500 {
            let mut rng = crate::sim::Rng::new(seed);
            let n = 1 + rng.below(60);
            let offers: Vec<Offer> = (0..n)
                .map(|i| {
                    let dph = 0.05 * (1 + rng.below(40)) as f64;
                    let mut o = offer(i as i64, models[rng.below(models.len())], dph);
                    o.reliability = [0.9, 0.95, 0.99][rng.below(3)];
                    o.inet_down = [100.0, 500.0, 1000.0][rng.below(3)];
                    o.dlperf = [0.0, 30.0, 60.0][rng.below(3)];
                    o.num_gpus = 1 + rng.below(2) as u32;
                    o
                })
                .collect();
            let e = Estimate {
                reference_hours: [0.5, 1.0, 2.0, 7.3][rng.below(4)],
                boot_hours: 0.1,
                max_dph: rng.chance(0.5).then(|| 0.5 + rng.unit() * 1.5),
                max_cost: rng.chance(0.5).then(|| 1.0 + rng.unit() * 10.0),
                interruptible: rng.chance(0.25),
            };
            let ranked = rank(&offers, &e);
            let mut left: Vec<(&Offer, f64, f64)> = offers
                .iter()
                .filter_map(|o| brute_total(o, &e).map(|(dph, t)| (o, dph, t)))
                .collect();
            assert_eq!(ranked.len(), left.len(), "seed {seed}: the caps");
            for (place, r) in ranked.iter().enumerate() {
                let best = (0..left.len())
                    .reduce(|i, j| {
                        if before((left[j].0, left[j].2), (left[i].0, left[i].2)) {
                            j
                        } else {
                            i
                        }
                    })
                    .expect("as many as ranked");
                let (o, dph, total) = left.remove(best);
                assert_eq!(offers[r.index].id, o.id, "seed {seed}, place {place}");
                assert_eq!((r.dph, r.total), (dph, total), "seed {seed}, place {place}");
                if place > 0 && ranked[place - 1].total == total {
                    let prev = &offers[ranked[place - 1].index];
                    if prev.reliability == o.reliability {
                        ties.1 += 1;
                    } else {
                        ties.0 += 1;
                    }
                }
            }
        }
        // The markets did exercise both tie-breaks.
        assert!(ties.0 > 50 && ties.1 > 50, "{ties:?}");
    }
}
