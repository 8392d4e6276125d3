//! `cargo bench --bench offers`: ranking 10,000 offers by estimated total
//! cost, and parsing a 2,000-offer search response, on one core. Prints the
//! median and fastest of many runs (no external harness: nothing to build).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rigger::cloud::vast::client::parse_offers_bytes;
use rigger::engine::rank::{Estimate, rank, rank_offers};
use rigger::sim::vast::market::generate;

/// Time `f` `runs` times; what it returns is dropped after the clock stops.
fn measure<T>(name: &str, runs: usize, mut f: impl FnMut() -> T) {
    let mut kept = Vec::with_capacity(runs);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = black_box(f());
            let elapsed = t.elapsed();
            kept.push(out);
            elapsed
        })
        .collect();
    drop(kept);
    times.sort();
    println!(
        "{name:<44} median {:>9.3} ms   fastest {:>9.3} ms   ({runs} runs)",
        times[runs / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

/// A search response as Vast.ai sends it: the market's offers, priced.
fn response(n: usize) -> Vec<u8> {
    let mut offers = generate(42, n, 1.7e9);
    for o in &mut offers {
        let base = o["dph_base"].as_f64().unwrap_or(0.0);
        let storage = o["storage_cost"].as_f64().unwrap_or(0.0) * 30.0 / 720.0;
        o.insert("dph_total".into(), serde_json::json!(base + storage));
    }
    serde_json::to_vec(&serde_json::json!({ "offers": offers })).expect("serialises")
}

fn main() {
    let big = response(10_000);
    let offers = parse_offers_bytes(&big).expect("parses");
    let estimate = Estimate {
        reference_hours: 2.0,
        boot_hours: 5.0 / 60.0,
        max_dph: Some(3.0),
        max_cost: Some(20.0),
        interruptible: false,
    };
    let kept = rank(&offers, &estimate).len();
    println!("({kept} of {} offers are within the caps)", offers.len());
    measure("rank 10,000 offers (the order)", 500, || {
        rank(black_box(&offers), &estimate)
    });
    // And with every offer moved into its priced entry, as the engine takes
    // them; each run gets its own copy, made before the clock starts.
    let mut copies: Vec<Vec<_>> = (0..200).map(|_| offers.clone()).collect();
    measure("rank 10,000 offers into priced entries", 200, || {
        let batch = copies.pop().expect("enough copies");
        rank_offers(black_box(batch), &estimate)
    });

    let body = response(2_000);
    println!("(a 2,000-offer response is {} KB)", body.len() / 1024);
    measure("parse a 2,000-offer search response", 200, || {
        parse_offers_bytes(black_box(&body)).expect("parses")
    });
}
