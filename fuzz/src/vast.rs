//! Vast.ai's answers, through rigger's real client over HTTP (the engine's
//! `Market` port where the engine uses it): statuses, `Retry-After`,
//! bodies, pages. Whatever Vast.ai answers, rigger returns a result or an
//! error without the API key or the machine's JIT config in it, claims
//! only instances carrying the label it asked for (I1), prices no offer at
//! NaN, and stops paginating.
//!
//! Input: a [`super::script`]; its first line is the call: `search`,
//! `create`, `create vm`, `find LABEL`, `list PREFIX`, `destroy ID`,
//! `get ID`, `ssh_keys` or `label ID TEXT`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use rigger::cloud::vast::client::{RetryPolicy, VastClient};
use rigger::cloud::{CloudProvider, LaunchSpec};
use rigger::config::model::VastRunner;
use rigger::engine::offers::Market;
use rigger::engine::ports::{Cloud, OfferSearch};
use rigger::settings::Secret;

use super::runtime::block_on;
use super::script::{Answer, Script, Service, after_call};

const API_KEY: &str = "fuzz-vast-key-7c41d9";
const JIT_CONFIG: &str = "jit-config-sEcReT-0b5e";
/// `list` reads at most 400 pages; a create in VM mode asks for SSH keys first.
const MOST_REQUESTS: usize = 2 * 402;

struct World {
    service: Service,
    market: Market<VastClient>,
    runner: VastRunner,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let service = Service::start(Answer::json(
            404,
            r#"{"success": false, "msg": "no such thing"}"#,
        ));
        let retry = RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            timeout: Duration::from_secs(10),
        };
        let client = VastClient::with_retry(&service.base, Secret::new(API_KEY), retry);
        // The example's fallback runner: several candidates, each searched.
        let runner = super::labels::example_runners()
            .iter()
            .find(|r| r.name == "gpu-fallback")
            .and_then(|r| r.vast.clone())
            .expect("examples/.cirun.yml has the vast_ai runner gpu-fallback");
        World {
            service,
            market: Market {
                provider: client,
                max_lifetime: None,
                diagnoses: rigger::engine::offers::Diagnoses::off(),
            },
            runner,
        }
    })
}

pub fn check(data: &[u8]) {
    let script = Script::parse(data);
    let w = world();
    w.service.load(&script, Vec::new());
    let outcome = block_on(call(script.call.clone()));
    let secrets = [API_KEY, JIT_CONFIG];
    after_call(
        &w.service,
        data,
        &script.call,
        &outcome,
        &secrets,
        MOST_REQUESTS,
    );
}

/// The call, and what it returned as text (for the secret check).
async fn call(line: String) -> String {
    let w = world();
    let mut words = line.splitn(3, ' ');
    let verb = words.next().unwrap_or_default().to_string();
    let arg = words.next().unwrap_or_default().to_string();
    let more = words.next().unwrap_or_default().to_string();
    let client = &w.market.provider;
    match verb.as_str() {
        "search" => search(w).await,
        "create" => {
            let vm = arg == "vm";
            format!("{:?}", w.market.create(&launch_spec(vm)).await)
        }
        "find" => {
            let found = w.market.find(&arg).await;
            if let Ok(Some(view)) = &found {
                assert_eq!(view.label, arg, "find returned another label's instance");
            }
            format!("{found:?}")
        }
        "list" => {
            let listed = w.market.list(&arg).await;
            for view in listed.iter().flatten() {
                assert!(
                    view.label.starts_with(&arg),
                    "list({arg:?}) returned {:?}",
                    view.label
                );
            }
            format!("{listed:?}")
        }
        "destroy" => format!("{:?}", w.market.destroy(&arg).await),
        "get" => format!("{:?}", client.get(&arg).await),
        "ssh_keys" => format!("{:?}", client.ssh_keys().await),
        "label" => format!("{:?}", client.label(&arg, &more).await),
        _ => format!(
            "{:?}",
            client
                .search(&rigger::cloud::vast::query::broad_filter(&example_filter(
                    w
                )))
                .await
        ),
    }
}

fn example_filter(w: &World) -> rigger::cloud::OfferFilter {
    let c = &w.runner.candidates[0];
    rigger::cloud::vast::query::filter_for(c, &w.runner.extra, w.runner.cpu_arch, None)
}

/// The engine's search: every candidate, ranked.
async fn search(w: &World) -> String {
    let found = w.market.search(&w.runner, 1.0).await;
    if let Ok(OfferSearch::Found(offers)) = &found {
        for o in offers {
            assert!(o.candidate < w.runner.candidates.len());
            assert!(
                !o.dph.is_nan() && !o.estimated_cost.is_nan() && !o.estimated_hours.is_nan(),
                "an offer priced at NaN passes every limit: {o:?}"
            );
        }
    }
    format!("{found:?}")
}

fn launch_spec(vm: bool) -> LaunchSpec {
    LaunchSpec {
        offer_id: 4242,
        image: "nvidia/cuda:12.4.0-base-ubuntu22.04".into(),
        disk_gb: 30.0,
        vm,
        bid_price: None,
        label: "rigger:fuzz:1:a1b2c3d4e5".into(),
        onstart: "#!/bin/sh\n".into(),
        env: BTreeMap::from([("RIGGER_JIT_0".to_string(), JIT_CONFIG.to_string())]),
    }
}
