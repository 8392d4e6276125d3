//! The offers on the simulated market, by id, with an index by GPU model.
//!
//! Every search rigger sends names the models it accepts, so a search reads
//! only their offers instead of the whole market: with 20,000 offers, most
//! of a burst's time went to testing offers of other models.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::filter::Search;

#[derive(Debug, Default)]
pub struct OfferBook {
    by_id: BTreeMap<i64, Map<String, Value>>,
    /// Offer ids by `gpu_name`; offers without one are under `None`.
    by_gpu: HashMap<Option<String>, BTreeSet<i64>>,
}

fn id_of(offer: &Map<String, Value>) -> Option<i64> {
    offer.get("id").and_then(Value::as_i64)
}

fn gpu_of(offer: &Map<String, Value>) -> Option<String> {
    offer
        .get("gpu_name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl OfferBook {
    /// Offers without a numeric `id` cannot be rented and are left out.
    pub fn new(offers: Vec<Map<String, Value>>) -> OfferBook {
        let mut book = OfferBook::default();
        for o in offers {
            book.put(o);
        }
        book
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every offer, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.by_id.values()
    }

    pub fn get(&self, id: i64) -> Option<&Map<String, Value>> {
        self.by_id.get(&id)
    }

    /// Take an offer off the market (rented).
    pub fn take(&mut self, id: i64) -> Option<Map<String, Value>> {
        let offer = self.by_id.remove(&id)?;
        let gpu = gpu_of(&offer);
        if let Some(ids) = self.by_gpu.get_mut(&gpu) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_gpu.remove(&gpu);
            }
        }
        Some(offer)
    }

    /// List an offer (again); one with the same id is replaced.
    pub fn put(&mut self, offer: Map<String, Value>) {
        let Some(id) = id_of(&offer) else {
            return;
        };
        self.take(id);
        self.by_gpu.entry(gpu_of(&offer)).or_default().insert(id);
        self.by_id.insert(id, offer);
    }

    /// The offers a search can match: when it limits `gpu_name` with `eq` or
    /// `in`, only those models' (and offers with no `gpu_name`, which the
    /// filter lets through as it does any missing column); otherwise all.
    /// The search's own conditions still decide; this only skips offers
    /// that cannot pass.
    pub fn candidates<'a>(
        &'a self,
        s: &Search,
    ) -> Box<dyn Iterator<Item = &'a Map<String, Value>> + 'a> {
        let Some(names) = s
            .conditions
            .iter()
            .find_map(|(col, op, v)| (col == "gpu_name").then(|| model_names(op, v)).flatten())
        else {
            return Box::new(self.by_id.values());
        };
        let mut ids: BTreeSet<i64> = self.by_gpu.get(&None).cloned().unwrap_or_default();
        for name in names {
            if let Some(of_model) = self.by_gpu.get(&Some(name)) {
                ids.extend(of_model);
            }
        }
        Box::new(ids.into_iter().filter_map(|id| self.by_id.get(&id)))
    }
}

/// The exact names an `eq`/`in` condition on `gpu_name` accepts, when they
/// are all strings (a string column equals only the same string).
fn model_names(op: &str, v: &Value) -> Option<Vec<String>> {
    let list = match (op, v) {
        ("eq", Value::String(_)) => std::slice::from_ref(v),
        ("in", Value::Array(items)) => items.as_slice(),
        _ => return None,
    };
    list.iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::vast::{filter, market};
    use serde_json::json;

    fn search(q: Value) -> Search {
        filter::parse(q.as_object().unwrap()).unwrap()
    }

    /// The index never changes an answer: the offers it yields that pass the
    /// search are exactly those of a scan of the whole market.
    #[test]
    fn the_index_answers_as_a_full_scan_does() {
        let mut offers = market::generate(7, 2_000, 0.0);
        let mut unnamed = offers[0].clone();
        unnamed.remove("gpu_name");
        unnamed.insert("id".into(), json!(1));
        offers.push(unnamed);
        let book = OfferBook::new(offers);
        for q in [
            json!({"gpu_name": {"eq": "RTX 4090"}, "num_gpus": {"eq": 1}}),
            json!({"gpu_name": {"in": ["RTX 3090", "A100 SXM4", "No Such GPU"]}}),
            json!({"gpu_name": {"neq": "RTX 4090"}}),
            // Not a string: no shortcut, and only the unnamed offer passes.
            json!({"gpu_name": {"eq": 4090}}),
            json!({"num_gpus": {"gte": 4}}),
        ] {
            let s = search(q.clone());
            let ids = |it: Box<dyn Iterator<Item = &Map<String, Value>> + '_>| -> Vec<i64> {
                it.filter(|o| filter::matches(o, &s, &filter::Computed::default()))
                    .filter_map(id_of)
                    .collect()
            };
            let scanned = ids(Box::new(book.iter()));
            assert!(!scanned.is_empty(), "{q}");
            assert_eq!(ids(book.candidates(&s)), scanned, "{q}");
        }
        let named = search(json!({"gpu_name": {"eq": "RTX 4090"}}));
        assert!(book.candidates(&named).count() < book.len() / 4);
        assert!(
            book.candidates(&named).any(|o| id_of(o) == Some(1)),
            "an offer with no gpu_name is never skipped"
        );
    }

    #[test]
    fn taken_offers_leave_the_index_and_come_back_when_listed() {
        let mut book = OfferBook::new(market::generate(3, 50, 0.0));
        let first = book.iter().next().unwrap().clone();
        let id = id_of(&first).unwrap();
        let model = search(json!({"gpu_name": {"eq": gpu_of(&first).unwrap()}}));
        let before = book.candidates(&model).count();
        assert!(book.take(id).is_some());
        assert!(book.take(id).is_none(), "taken once");
        assert_eq!(book.candidates(&model).count(), before - 1);
        assert_eq!(book.len(), 49);
        book.put(first);
        assert_eq!(book.candidates(&model).count(), before);
        assert_eq!(book.get(id).map(id_of), Some(Some(id)));
    }
}
