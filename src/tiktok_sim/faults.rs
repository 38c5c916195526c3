//! Fault injection: the plan parsed from `--faults` / `POST /sim/faults`, and the per-request
//! decision it makes.
//!
//! The syntax is documented in the parent module ([`crate::tiktok_sim`], "Fault injection").
//! A decision is taken once per request to a TikTok endpoint, before authentication, so a
//! faulted request never touches audiences, members or the QPS windows.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::handlers::Endpoint;

/// A spec that does not parse; the message names the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultSpecError(String);

fn err(msg: impl Into<String>) -> FaultSpecError {
    FaultSpecError(msg.into())
}

/// What a faulted request gets instead of normal processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// HTTP 200 envelope with this non-zero business code.
    Code(i64),
    /// This HTTP status (400–599) with an HTML body, like a gateway error page.
    Http(u16),
    /// The connection is closed without a response (TCP RST).
    Reset,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Code(c) => write!(f, "{c}"),
            Outcome::Http(s) => write!(f, "http{s}"),
            Outcome::Reset => f.write_str("reset"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ok,
    Latency(Duration),
    Fail(Outcome),
}

#[derive(Debug, Clone)]
enum Kind {
    Rate(Vec<(Outcome, f64)>),
    Script(VecDeque<Step>),
    Latency(Duration),
}

#[derive(Debug, Clone)]
struct Clause {
    scope: Option<Endpoint>,
    kind: Kind,
}

impl Clause {
    fn applies(&self, ep: Endpoint) -> bool {
        self.scope.is_none_or(|s| s == ep)
    }
}

/// The fault decision for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Added before the request is processed (or failed).
    pub latency: Duration,
    pub outcome: Option<Outcome>,
    /// What was injected, for the request log (`None` when nothing was).
    pub label: Option<String>,
}

/// A parsed fault plan with its remaining script steps and its random source.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    text: String,
    clauses: Vec<Clause>,
    rng: fastrand::Rng,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            text: String::new(),
            clauses: Vec::new(),
            rng: fastrand::Rng::new(),
        }
    }
}

impl FaultPlan {
    pub fn parse(text: &str) -> Result<FaultPlan, FaultSpecError> {
        let mut plan = FaultPlan {
            text: text.trim().to_owned(),
            ..FaultPlan::default()
        };
        if plan.text.is_empty() || plan.text == "none" {
            return Ok(plan);
        }
        for item in text.split([',', ';', '\n']).map(str::trim) {
            if item.is_empty() {
                continue;
            }
            match item.split_once(':') {
                Some((head, rest)) => plan.start_clause(head, rest.trim())?,
                None => plan.continue_clause(item)?,
            }
        }
        for clause in &plan.clauses {
            if let Kind::Rate(entries) = &clause.kind {
                let total: f64 = entries.iter().map(|(_, p)| p).sum();
                if total > 1.0 + 1e-9 {
                    return Err(err(format!("rates of one clause add up to {total} (> 1)")));
                }
            }
        }
        Ok(plan)
    }

    /// The spec text this plan was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn start_clause(&mut self, head: &str, first: &str) -> Result<(), FaultSpecError> {
        let (kind, scope) = match head.split_once('@') {
            Some((kind, scope)) => (kind.trim(), Some(parse_scope(scope.trim())?)),
            None => (head.trim(), None),
        };
        let kind = match kind {
            "rate" => Kind::Rate(vec![parse_rate(first)?]),
            "script" => Kind::Script(parse_steps(first)?.into()),
            "latency" => Kind::Latency(parse_duration(first)?),
            "seed" if scope.is_none() => {
                let seed = first
                    .parse()
                    .map_err(|_| err(format!("seed {first:?} is not an unsigned integer")))?;
                self.rng = fastrand::Rng::with_seed(seed);
                return Ok(());
            }
            other => return Err(err(format!("unknown fault clause {other:?}"))),
        };
        self.clauses.push(Clause { scope, kind });
        Ok(())
    }

    fn continue_clause(&mut self, item: &str) -> Result<(), FaultSpecError> {
        match self.clauses.last_mut().map(|c| &mut c.kind) {
            Some(Kind::Rate(entries)) => entries.push(parse_rate(item)?),
            Some(Kind::Script(steps)) => steps.extend(parse_steps(item)?),
            _ => {
                return Err(err(format!(
                    "{item:?} must follow a rate: or script: clause"
                )))
            }
        }
        Ok(())
    }

    /// Takes the decision for one request to `ep`, consuming a script step if one applies.
    pub fn decide(&mut self, ep: Endpoint) -> Decision {
        let mut latency = Duration::ZERO;
        for c in self.clauses.iter().filter(|c| c.applies(ep)) {
            if let Kind::Latency(d) = c.kind {
                latency += d;
            }
        }
        let mut scripted = None;
        for c in self.clauses.iter_mut().filter(|c| c.applies(ep)) {
            if let Kind::Script(steps) = &mut c.kind {
                if let Some(step) = steps.pop_front() {
                    scripted = Some(step);
                    break;
                }
            }
        }
        let outcome = match scripted {
            Some(Step::Ok) => None,
            Some(Step::Latency(d)) => {
                latency += d;
                None
            }
            Some(Step::Fail(o)) => Some(o),
            None => self.roll(ep),
        };
        let mut labels = Vec::new();
        if !latency.is_zero() {
            labels.push(format!("latency={}", humantime::format_duration(latency)));
        }
        if let Some(o) = outcome {
            labels.push(o.to_string());
        }
        Decision {
            latency,
            outcome,
            label: (!labels.is_empty()).then(|| labels.join("+")),
        }
    }

    fn roll(&mut self, ep: Endpoint) -> Option<Outcome> {
        let mut rates = self
            .clauses
            .iter()
            .filter(|c| c.applies(ep))
            .filter_map(|c| match &c.kind {
                Kind::Rate(entries) => Some(entries.iter()),
                _ => None,
            })
            .flatten()
            .peekable();
        rates.peek()?;
        let r = self.rng.f64();
        let mut acc = 0.0;
        for (outcome, p) in rates {
            acc += p;
            if r < acc {
                return Some(*outcome);
            }
        }
        None
    }
}

fn parse_scope(name: &str) -> Result<Endpoint, FaultSpecError> {
    Endpoint::from_scope_name(name).ok_or_else(|| {
        err(format!(
            "unknown endpoint {name:?} (expected audience, mapping, get or list)"
        ))
    })
}

fn parse_duration(text: &str) -> Result<Duration, FaultSpecError> {
    humantime::parse_duration(text).map_err(|e| err(format!("bad duration {text:?}: {e}")))
}

fn parse_outcome(text: &str) -> Result<Outcome, FaultSpecError> {
    if text == "reset" {
        return Ok(Outcome::Reset);
    }
    if let Some(status) = text.strip_prefix("http") {
        return match status.parse::<u16>() {
            Ok(s @ 400..=599) => Ok(Outcome::Http(s)),
            _ => Err(err(format!("{text:?}: expected http400 to http599"))),
        };
    }
    match text.parse::<i64>() {
        Ok(code @ 1..=99_999) => Ok(Outcome::Code(code)),
        _ => Err(err(format!(
            "unknown fault {text:?} (expected a business code such as 50002, httpNNN or reset)"
        ))),
    }
}

fn parse_rate(text: &str) -> Result<(Outcome, f64), FaultSpecError> {
    let (what, p) = text
        .rsplit_once('=')
        .ok_or_else(|| err(format!("rate {text:?} must be FAULT=PROBABILITY")))?;
    let p: f64 = p
        .trim()
        .parse()
        .ok()
        .filter(|p: &f64| (0.0..=1.0).contains(p))
        .ok_or_else(|| err(format!("rate {text:?}: probability must be within 0..=1")))?;
    Ok((parse_outcome(what.trim())?, p))
}

/// One script item: `ok`, `latency=DUR`, a fault, each optionally repeated with `*N`.
fn parse_steps(text: &str) -> Result<Vec<Step>, FaultSpecError> {
    let (step, times) = match text.rsplit_once('*') {
        Some((step, n)) => {
            let n: usize = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| err(format!("{text:?}: repeat count must be 1..=100000")))?;
            (step.trim(), n)
        }
        None => (text, 1),
    };
    let step = if step == "ok" {
        Step::Ok
    } else if let Some(d) = step.strip_prefix("latency=") {
        Step::Latency(parse_duration(d)?)
    } else {
        Step::Fail(parse_outcome(step)?)
    };
    Ok(vec![step; times])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(plan: &mut FaultPlan, ep: Endpoint, n: usize) -> Vec<Option<String>> {
        (0..n).map(|_| plan.decide(ep).label).collect()
    }

    #[test]
    fn script_runs_in_order_then_passes() {
        let mut plan = FaultPlan::parse("script:40100,40100,ok,http504,reset,latency=2s").unwrap();
        let got = outcomes(&mut plan, Endpoint::Mapping, 7);
        let want = [
            Some("40100"),
            Some("40100"),
            None,
            Some("http504"),
            Some("reset"),
            Some("latency=2s"),
            None,
        ];
        assert_eq!(got, want.map(|s| s.map(str::to_owned)));
    }

    #[test]
    fn scoped_script_only_consumed_by_its_endpoint_and_repeat_expands() {
        let mut plan = FaultPlan::parse("script@mapping:51003*2;latency@get:1s").unwrap();
        assert_eq!(plan.decide(Endpoint::SegmentAudience).outcome, None);
        assert_eq!(plan.decide(Endpoint::Get).latency, Duration::from_secs(1));
        assert_eq!(
            plan.decide(Endpoint::Mapping).outcome,
            Some(Outcome::Code(51003))
        );
        assert_eq!(
            plan.decide(Endpoint::Mapping).outcome,
            Some(Outcome::Code(51003))
        );
        assert_eq!(plan.decide(Endpoint::Mapping).outcome, None);
    }

    #[test]
    fn rates_follow_their_probabilities_with_a_seed() {
        let mut plan = FaultPlan::parse("seed:7,rate:50002=0.25,rate:http504=0.25").unwrap();
        let n = 20_000;
        let labels = outcomes(&mut plan, Endpoint::Mapping, n);
        let count = |l: &str| labels.iter().filter(|x| x.as_deref() == Some(l)).count();
        for l in ["50002", "http504"] {
            let share = count(l) as f64 / n as f64;
            assert!((0.22..0.28).contains(&share), "{l}: {share}");
        }
        assert_eq!(
            FaultPlan::parse("rate:60001=1")
                .unwrap()
                .decide(Endpoint::List)
                .outcome,
            Some(Outcome::Code(60001))
        );
        assert_eq!(
            FaultPlan::parse("rate:60001=0")
                .unwrap()
                .decide(Endpoint::List)
                .outcome,
            None
        );
    }

    #[test]
    fn bad_specs_are_rejected_with_the_item_named() {
        for (spec, needle) in [
            ("rate:50002=1.5", "probability"),
            ("rate:50002=0.6,50000=0.6", "add up"),
            ("script:", "unknown fault"),
            ("script:http200", "http400"),
            ("50002", "must follow"),
            ("boom:1", "unknown fault clause"),
            ("script@nowhere:ok", "unknown endpoint"),
            ("latency:fast", "bad duration"),
            ("script:ok*0", "repeat count"),
            ("rate:ok=0.1", "unknown fault"),
        ] {
            let e = FaultPlan::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
        assert!(FaultPlan::parse("none").unwrap().clauses.is_empty());
        assert!(FaultPlan::parse("").unwrap().clauses.is_empty());
    }
}
