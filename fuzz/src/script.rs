//! A service that answers what the fuzz input says: for the checks that
//! drive rigger's real HTTP clients (Vast.ai, GitHub) end to end, so that
//! what is fuzzed is everything rigger does with an answer — status,
//! headers, body, the next page — not a function picked out of it.
//!
//! Input format (text, so that seeds can be written by hand):
//!
//! ```text
//! list rigger:prod:            <- the call, first line (each check has its own)
//! === 200                      <- an answer: its status
//! > retry-after: 3             <- its headers, one a line
//! {"instances": []}            <- its body, up to the next `=== ` line
//! === 404
//! === repeat                   <- the last answer again, for every later request
//! ```
//!
//! `{base}` in a header or body is the service's own URL (GitHub's `Link`
//! header must point there to be followed). After the last answer, every
//! request gets [`Script::exhausted`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};

use super::runtime::{NOW_MS, runtime};

/// The first line and the rest.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// One answer to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// An input read as a call and its answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub call: String,
    pub answers: Vec<Answer>,
    /// `=== repeat`: the last answer again, forever.
    pub repeat_last: bool,
}

const MARK: &[u8] = b"=== ";

impl Script {
    pub fn parse(data: &[u8]) -> Script {
        let mut parts = split_marked(data).into_iter();
        let call = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let mut answers = Vec::new();
        let mut repeat_last = false;
        for part in parts {
            let (head, rest) = split_line(part);
            if head.starts_with(b"repeat") {
                repeat_last = true;
                break;
            }
            answers.push(answer(head, rest));
        }
        Script {
            call: call.trim_end().to_string(),
            answers,
            repeat_last,
        }
    }
}

/// Pieces at each line that starts with `=== ` (the mark itself dropped;
/// the line break before it belongs to neither piece).
pub fn split_marked(data: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut line_start = 0;
    while line_start <= data.len() {
        let line_end = data[line_start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| line_start + i);
        if data[line_start..].starts_with(MARK) {
            pieces.push(&data[start..line_start.saturating_sub(1).max(start)]);
            start = line_start + MARK.len();
        }
        line_start = line_end + 1;
    }
    pieces.push(&data[start.min(data.len())..]);
    pieces
}

/// `200` then `> name: value` lines, then the body.
fn answer(head: &[u8], mut rest: &[u8]) -> Answer {
    let digits: String = String::from_utf8_lossy(head)
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    // Statuses a server sends as an answer; 1xx are not final answers.
    let status = match digits.parse::<u16>() {
        Ok(s) if (200..=599).contains(&s) => s,
        Ok(s) => 200 + s % 400,
        Err(_) => 200,
    };
    let mut headers = Vec::new();
    while let Some(line) = rest.strip_prefix(b"> ") {
        let (line, after) = split_line(line);
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        rest = after;
    }
    Answer {
        status,
        headers,
        body: rest.to_vec(),
    }
}

/// A request the service received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
}

struct Queue {
    answers: VecDeque<Answer>,
    repeat: Option<Answer>,
    /// Answers for paths (a prefix) that the script does not answer.
    fixed: Vec<(String, Answer)>,
    exhausted: Answer,
    seen: Vec<Seen>,
}

/// The scripted service on loopback, started once per process.
#[derive(Clone)]
pub struct Service {
    pub base: String,
    queue: Arc<Mutex<Queue>>,
}

impl Service {
    /// Listening on an OS-chosen loopback port; `exhausted` answers every
    /// request after the script's last answer.
    pub fn start(exhausted: Answer) -> Service {
        let queue = Arc::new(Mutex::new(Queue {
            answers: VecDeque::new(),
            repeat: None,
            fixed: Vec::new(),
            exhausted,
            seen: Vec::new(),
        }));
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let app = Router::new().fallback(respond).with_state(queue.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        Service { base, queue }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer with `script` from now on; `fixed` answers requests whose
    /// path starts with its prefix, outside the script.
    pub fn load(&self, script: &Script, fixed: Vec<(String, Answer)>) {
        let fill = |a: &Answer| Answer {
            status: a.status,
            headers: a
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.replace("{base}", &self.base)))
                .collect(),
            body: replace_bytes(&a.body, b"{base}", self.base.as_bytes()),
        };
        let answers: VecDeque<Answer> = script.answers.iter().map(fill).collect();
        let mut q = self.queue();
        q.repeat = script
            .repeat_last
            .then(|| answers.back().cloned())
            .flatten();
        q.answers = answers;
        q.fixed = fixed;
        q.seen.clear();
    }

    /// The requests since the last [`Service::load`].
    pub fn seen(&self) -> Vec<Seen> {
        self.queue().seen.clone()
    }
}

/// What must hold after any call against the service: none of `secrets`
/// in what the call returned (unless the input itself holds it, as an
/// answer may echo anything), a rate limit's delay one the engine can add
/// to its clock (it schedules the retry at `now + retry_after_ms`), and at
/// most `most` requests for one call.
pub fn after_call(
    service: &Service,
    input: &[u8],
    call: &str,
    outcome: &str,
    secrets: &[&str],
    most: usize,
) {
    super::runtime::show(call, outcome);
    let input = String::from_utf8_lossy(input);
    for secret in secrets.iter().filter(|s| !input.contains(*s)) {
        assert!(!outcome.contains(secret), "{secret:?} in {outcome:?}");
    }
    for delay in rate_limit_delays(outcome) {
        assert!(
            delay.checked_add(NOW_MS).is_some(),
            "a rate limit of {delay} ms overflows the engine's clock: {outcome}"
        );
    }
    let seen = service.seen().len();
    assert!(seen <= most, "{seen} requests for one call");
}

/// The `retry_after_ms` of every `RateLimited` in a result's `Debug` text.
fn rate_limit_delays(outcome: &str) -> Vec<i64> {
    const FIELD: &str = "retry_after_ms: ";
    outcome
        .match_indices(FIELD)
        .filter_map(|(i, _)| {
            let rest = &outcome[i + FIELD.len()..];
            let end = rest
                .char_indices()
                .find(|(j, c)| !(c.is_ascii_digit() || (*j == 0 && *c == '-')))
                .map_or(rest.len(), |(j, _)| j);
            rest[..end].parse().ok()
        })
        .collect()
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

async fn respond(
    State(queue): State<Arc<Mutex<Queue>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response<Body> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let answer = {
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        q.seen.push(Seen {
            method: method.to_string(),
            path_and_query: path.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        });
        let fixed = q
            .fixed
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, a)| a.clone());
        fixed
            .or_else(|| q.answers.pop_front())
            .or_else(|| q.repeat.clone())
            .unwrap_or_else(|| q.exhausted.clone())
    };
    build(answer)
}

fn build(a: Answer) -> Response<Body> {
    let mut response = Response::new(Body::from(a.body));
    *response.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    for (name, value) in a.headers {
        // The framing is the server's (hyper's) business, not the script's.
        let framing = ["content-length", "transfer-encoding", "connection"];
        if framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_as_written() {
        let s =
            Script::parse(b"list x\n=== 200\n> retry-after: 3\n{\"a\": 1}\n=== 404\n=== repeat\n");
        assert_eq!(s.call, "list x");
        assert_eq!(s.answers.len(), 2);
        assert_eq!(
            s.answers[0].headers,
            vec![("retry-after".into(), "3".into())]
        );
        assert_eq!(s.answers[0].body, b"{\"a\": 1}");
        assert_eq!(s.answers[1].status, 404);
        assert!(s.repeat_last);
    }
}
