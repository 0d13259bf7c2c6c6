//! The scaling policy as a pure function: rule samples + history + spec → desired replicas and
//! the reason. No clock, no I/O: the loop passes the time in, so every trap is a table test.
//!
//! It is written against KEDA's known traps: an empty result is an error unless a rule says it
//! means zero (keda#3065); the fallback applies at zero replicas too (keda#7239); and failing
//! metrics do not freeze the count for ever, since after `failureThreshold` failed polls the
//! fallback decides (keda#6887).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// A validated autoscaling spec with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Fewest replicas.
    pub min: i32,
    /// Most replicas.
    pub max: i32,
    /// The rules, in spec order.
    pub rules: Vec<RulePolicy>,
    /// Seconds between polls.
    pub interval: Duration,
    /// Scale-up stabilization window: the lowest recommendation in it wins.
    pub scale_up_window: Duration,
    /// Scale-down stabilization window: the highest recommendation in it wins.
    pub scale_down_window: Duration,
    /// Most replicas added by one decision.
    pub scale_up_step: Option<i32>,
    /// Most replicas removed by one decision.
    pub scale_down_step: Option<i32>,
    /// How long every rule must stay at or below its activation threshold before scaling to zero.
    pub zero_cooldown: Duration,
    /// Consecutive failed polls before the fallback applies.
    pub failure_threshold: u32,
    /// What the fallback does.
    pub fallback: FallbackAction,
}

/// One rule of a [`Policy`].
#[derive(Clone, Debug, PartialEq)]
pub struct RulePolicy {
    /// Rule name.
    pub name: String,
    /// PromQL, presets already expanded.
    pub query: String,
    /// How a value becomes replicas.
    pub target: Target,
    /// Activation threshold.
    pub activation: f64,
    /// Whether an empty result means zero (otherwise it is an error).
    pub empty_is_zero: bool,
}

/// How a rule's value becomes a replica count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// `ceil(value / target)`.
    PerReplica(f64),
    /// `ceil(current * value / target)`.
    Value(f64),
}

/// The fallback's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackAction {
    /// Hold the current count (within the bounds).
    KeepCurrent,
    /// Set this many replicas, from zero too.
    Static(i32),
}

/// What one rule's query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// A number (possibly NaN or infinite, which are errors).
    Value(f64),
    /// The query returned no series.
    Empty,
    /// The query failed (Prometheus unreachable, bad PromQL, more than one series).
    Failed(String),
}

/// What the policy remembers between polls.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Recommendations of recent polls, oldest first, with the time they were made.
    pub recommendations: VecDeque<(Duration, i32)>,
    /// Consecutive failed polls.
    pub failures: u32,
    /// When a rule was last above its activation threshold.
    pub last_active: Duration,
}

impl History {
    /// The history of a component first seen at `now` with `current` replicas: as if that count
    /// had just been recommended and the component had just been active, so a restarted operator
    /// does not scale down (or to zero) before a full window has passed.
    pub fn new(now: Duration, current: i32) -> Self {
        Self {
            recommendations: VecDeque::from([(now, current)]),
            failures: 0,
            last_active: now,
        }
    }
}

/// One rule's outcome in a [`Decision`].
pub type RuleOutcome = Result<f64, String>;

/// The policy's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Replicas to write.
    pub desired: i32,
    /// Why.
    pub reason: Reason,
    /// Each rule's usable value, or why it has none, in spec order.
    pub outcomes: Vec<(String, RuleOutcome)>,
    /// Whether the fallback decided.
    pub fallback_active: bool,
    /// The history for the next poll.
    pub history: History,
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The rules' recommendation, after windows, steps and bounds.
    Rules {
        /// The rule with the highest raw recommendation.
        rule: String,
        /// Its value.
        value: f64,
        /// The highest raw recommendation, before windows, steps and bounds.
        recommended: i32,
    },
    /// Every rule at or below its activation threshold for the cooldown: scale to zero.
    Inactive,
    /// A poll failed, fewer than `failureThreshold` times in a row: hold (scaling up only if a
    /// working rule asks for it).
    Holding {
        /// Consecutive failures so far.
        failures: u32,
        /// The first error.
        error: String,
    },
    /// `failureThreshold` polls failed in a row: the fallback decides.
    Fallback {
        /// Consecutive failures.
        failures: u32,
        /// The first error.
        error: String,
    },
}

impl Reason {
    /// Short label for metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Rules { .. } => "Rules",
            Self::Inactive => "Inactive",
            Self::Holding { .. } => "Holding",
            Self::Fallback { .. } => "Fallback",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rules {
                rule,
                value,
                recommended,
            } => write!(
                f,
                "rule {rule:?} has value {value} and recommends {recommended}"
            ),
            Self::Inactive => f.write_str("every rule is at or below its activation threshold"),
            Self::Holding { failures, error } => {
                write!(f, "poll failed ({failures} in a row): {error}; holding")
            }
            Self::Fallback { failures, error } => {
                write!(f, "fallback after {failures} failed polls: {error}")
            }
        }
    }
}

/// Desired replicas for a component with `current` replicas, given this poll's `samples` (one
/// per rule, in order), its `history`, and the time `now` on the loop's clock.
pub fn decide(
    policy: &Policy,
    current: i32,
    samples: &[Sample],
    history: &History,
    now: Duration,
) -> Decision {
    let mut next = history.clone();
    let outcomes: Vec<(String, RuleOutcome)> = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let sample = samples
                .get(i)
                .cloned()
                .unwrap_or_else(|| Sample::Failed("no sample".into()));
            (rule.name.clone(), read(rule, sample))
        })
        .collect();

    // The highest raw recommendation over the rules that have a value.
    let mut best: Option<(String, f64, i32)> = None;
    let mut active = false;
    for (rule, (_, outcome)) in policy.rules.iter().zip(&outcomes) {
        let Ok(value) = outcome else { continue };
        active |= *value > rule.activation;
        let r = recommend(rule.target, *value, current, rule.activation);
        if best.as_ref().is_none_or(|(_, _, b)| r > *b) {
            best = Some((rule.name.clone(), *value, r));
        }
    }
    if active {
        next.last_active = now;
    }
    // Not `clamp`, which panics when the bounds cross; validation keeps them ordered anyway.
    let clamp = |n: i32| n.max(policy.min).min(policy.max);

    let first_error = outcomes
        .iter()
        .find_map(|(name, o)| o.as_ref().err().map(|e| format!("rule {name:?}: {e}")));
    if let Some(error) = first_error {
        next.failures = history.failures.saturating_add(1);
        // Working rules may still scale up (never down), as the HPA does with partial metrics.
        let scale_up = best.as_ref().map(|(_, _, r)| *r).filter(|r| *r > current);
        let (base, reason, fallback_active) = if next.failures >= policy.failure_threshold {
            let base = match policy.fallback {
                FallbackAction::KeepCurrent => current,
                FallbackAction::Static(n) => n,
            };
            let reason = Reason::Fallback {
                failures: next.failures,
                error,
            };
            (base, reason, true)
        } else {
            let reason = Reason::Holding {
                failures: next.failures,
                error,
            };
            (current, reason, false)
        };
        let desired = clamp(scale_up.map_or(base, |r| r.max(base)));
        remember(&mut next, policy, now, desired);
        return Decision {
            desired,
            reason,
            outcomes,
            fallback_active,
            history: next,
        };
    }
    next.failures = 0;

    let Some((rule, value, raw)) = best else {
        // No rules: nothing to follow but the bounds.
        return Decision {
            desired: clamp(current),
            reason: Reason::Inactive,
            outcomes,
            fallback_active: false,
            history: next,
        };
    };

    if policy.min == 0 && !active {
        let cooled = now.saturating_sub(next.last_active) >= policy.zero_cooldown;
        if current == 0 || cooled {
            // Scaling to zero follows the cooldown, not the windows.
            next.recommendations.clear();
            remember(&mut next, policy, now, 0);
            return Decision {
                desired: 0,
                reason: Reason::Inactive,
                outcomes,
                fallback_active: false,
                history: next,
            };
        }
    }
    // Active (or inside the cooldown): at least one replica when the bounds allow zero.
    let floor = if policy.min == 0 { 1 } else { policy.min };
    let recommended = raw.max(floor).min(policy.max);
    remember(&mut next, policy, now, recommended);

    let in_window = |w: Duration| {
        next.recommendations
            .iter()
            .filter(move |(t, _)| now.saturating_sub(*t) <= w)
            .map(|(_, r)| *r)
    };
    let up = in_window(policy.scale_up_window)
        .min()
        .unwrap_or(recommended);
    let down = in_window(policy.scale_down_window)
        .max()
        .unwrap_or(recommended);
    let mut desired = current;
    if desired < up {
        desired = up;
    }
    if desired > down {
        desired = down;
    }
    if let Some(step) = policy.scale_up_step {
        desired = desired.min(current.saturating_add(step));
    }
    if let Some(step) = policy.scale_down_step {
        desired = desired.max(current.saturating_sub(step));
    }
    Decision {
        desired: clamp(desired),
        reason: Reason::Rules {
            rule,
            value,
            recommended: raw,
        },
        outcomes,
        fallback_active: false,
        history: next,
    }
}

/// A sample as a usable value or the reason it is not one.
fn read(rule: &RulePolicy, sample: Sample) -> RuleOutcome {
    match sample {
        Sample::Value(v) if v.is_nan() => Err("the query returned NaN".into()),
        Sample::Value(v) if v.is_infinite() => Err("the query returned an infinite value".into()),
        Sample::Value(v) => Ok(v),
        Sample::Empty if rule.empty_is_zero => Ok(0.0),
        Sample::Empty => {
            Err("the query returned no series (set emptyResult: zero if that means zero)".into())
        }
        Sample::Failed(e) => Err(e),
    }
}

/// The raw replica count one rule asks for.
fn recommend(target: Target, value: f64, current: i32, activation: f64) -> i32 {
    let replicas = match target {
        Target::PerReplica(t) => (value / t).ceil(),
        // A value-type target scales the current count; from zero, activation starts one.
        Target::Value(_) if current == 0 => f64::from(u8::from(value > activation)),
        Target::Value(t) => (f64::from(current) * value / t).ceil(),
    };
    // f64 → i32 saturates; negative values mean no load.
    (replicas as i32).max(0)
}

/// Records `recommended` at `now` and forgets what no window can see any more.
fn remember(history: &mut History, policy: &Policy, now: Duration, recommended: i32) {
    history.recommendations.push_back((now, recommended));
    let keep = policy.scale_up_window.max(policy.scale_down_window);
    while history
        .recommendations
        .front()
        .is_some_and(|(t, _)| now.saturating_sub(*t) > keep)
    {
        history.recommendations.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> Policy {
        Policy {
            min: 0,
            max: 10,
            rules: vec![rule("queue", 5.0)],
            interval: S(15),
            scale_up_window: S(0),
            scale_down_window: S(0),
            scale_up_step: None,
            scale_down_step: None,
            zero_cooldown: S(0),
            failure_threshold: 3,
            fallback: FallbackAction::KeepCurrent,
        }
    }

    fn rule(name: &str, per_replica: f64) -> RulePolicy {
        RulePolicy {
            name: name.into(),
            query: "q".into(),
            target: Target::PerReplica(per_replica),
            activation: 0.0,
            empty_is_zero: false,
        }
    }

    fn v(x: f64) -> Vec<Sample> {
        vec![Sample::Value(x)]
    }

    /// One poll from a fresh history at t=0 (seeded with `current`), decided at `now`.
    fn once(p: &Policy, current: i32, samples: &[Sample], now: u64) -> Decision {
        decide(p, current, samples, &History::new(S(0), current), S(now))
    }

    /// Runs polls `(time, samples)` in order, each starting from the previous decision's count.
    fn run(p: &Policy, start: i32, polls: &[(u64, Vec<Sample>)]) -> Vec<i32> {
        let mut h = History::new(S(0), start);
        let mut current = start;
        polls
            .iter()
            .map(|(t, s)| {
                let d = decide(p, current, s, &h, S(*t));
                h = d.history;
                current = d.desired;
                current
            })
            .collect()
    }

    #[test]
    fn average_value_arithmetic() {
        let p = policy();
        // (current, value, expected): a queue of 20 with a target of 5 gives 4.
        for (current, value, expected) in [
            (1, 20.0, 4),
            (1, 21.0, 5),
            (4, 20.0, 4),
            (1, 5.0, 1),
            (3, 0.5, 1),
            (1, 1000.0, 10),
        ] {
            let d = once(&p, current, &v(value), 1);
            assert_eq!(d.desired, expected, "current {current}, value {value}");
            assert!(matches!(d.reason, Reason::Rules { .. }), "{:?}", d.reason);
        }
    }

    #[test]
    fn the_highest_rule_wins_and_value_targets_scale_the_current_count() {
        let mut p = policy();
        p.rules.push(RulePolicy {
            target: Target::Value(0.5),
            ..rule("p95", 0.0)
        });
        // Queue: ceil(6/5) = 2; latency 1.0 s against 0.5 s at 3 replicas: ceil(3*1/0.5) = 6.
        let d = once(&p, 3, &[Sample::Value(6.0), Sample::Value(1.0)], 1);
        assert_eq!(d.desired, 6);
        assert!(matches!(&d.reason, Reason::Rules { rule, recommended: 6, .. } if rule == "p95"));
    }

    #[test]
    fn activation_to_and_from_zero() {
        let mut p = policy();
        p.rules[0].activation = 2.0;
        p.zero_cooldown = S(30);
        // At zero: a value at the threshold keeps it at zero; above it starts at least one.
        assert_eq!(once(&p, 0, &v(2.0), 1).desired, 0);
        assert_eq!(once(&p, 0, &v(3.0), 1).desired, 1);
        assert_eq!(once(&p, 0, &v(12.0), 1).desired, 3);
        // Inactive from t=0: held at one replica until the cooldown has passed, then zero.
        assert_eq!(
            run(&p, 1, &[(10, v(0.0)), (29, v(1.0)), (30, v(0.0))]),
            [1, 1, 0]
        );
        // Activity resets the cooldown.
        assert_eq!(
            run(&p, 1, &[(20, v(3.0)), (40, v(0.0)), (50, v(0.0))]),
            [1, 1, 0]
        );
        // With minReplicas above zero, inactivity never goes below it.
        p.min = 2;
        assert_eq!(once(&p, 3, &v(0.0), 100).desired, 2);
    }

    #[test]
    fn scaling_down_uses_the_highest_recommendation_in_the_window() {
        let mut p = policy();
        p.min = 1;
        p.scale_down_window = S(60);
        // 8 at t=10, then the load falls: the count stays at 8 until t=10 leaves the window.
        let polls = [
            (10, v(40.0)),
            (20, v(10.0)),
            (50, v(5.0)),
            (70, v(5.0)),
            (71, v(5.0)),
        ];
        assert_eq!(run(&p, 1, &polls), [8, 8, 8, 8, 2]);
    }

    #[test]
    fn scaling_up_uses_the_lowest_recommendation_in_the_window() {
        let mut p = policy();
        p.min = 1;
        p.scale_up_window = S(30);
        // The seed (1 at t=0) holds the count until it leaves the window; then the lowest of
        // the recent recommendations.
        let polls = [(10, v(40.0)), (20, v(20.0)), (31, v(40.0)), (51, v(40.0))];
        assert_eq!(run(&p, 1, &polls), [1, 1, 4, 8]);
    }

    #[test]
    fn maximum_step_and_bounds() {
        let mut p = policy();
        p.min = 2;
        p.max = 6;
        p.scale_up_step = Some(2);
        p.scale_down_step = Some(1);
        assert_eq!(run(&p, 2, &[(1, v(100.0)), (2, v(100.0))]), [4, 6]);
        assert_eq!(run(&p, 6, &[(1, v(0.0)), (2, v(0.0))]), [5, 4]);
        // Bounds win over everything, including a count outside them after a spec change.
        p.scale_down_step = None;
        assert_eq!(once(&p, 9, &v(100.0), 1).desired, 6);
        assert_eq!(once(&p, 0, &v(0.0), 1).desired, 2);
    }

    #[test]
    fn fallback_after_n_failures() {
        let mut p = policy();
        p.min = 1;
        p.fallback = FallbackAction::Static(5);
        let fail = vec![Sample::Failed("connection refused".into())];
        let mut h = History::new(S(0), 2);
        let mut seen = Vec::new();
        for t in 1..=4 {
            let d = decide(&p, 2, &fail, &h, S(t));
            seen.push((d.desired, d.fallback_active, d.reason.label()));
            h = d.history;
        }
        assert_eq!(
            seen,
            [
                (2, false, "Holding"),
                (2, false, "Holding"),
                (5, true, "Fallback"),
                (5, true, "Fallback")
            ]
        );
        // One good poll ends the fallback and resets the count of failures.
        let d = decide(&p, 5, &v(10.0), &h, S(5));
        assert_eq!(
            (d.desired, d.fallback_active, d.history.failures),
            (2, false, 0)
        );
    }

    #[test]
    fn keep_current_is_not_frozen_outside_the_bounds() {
        // keda#6887: failing metrics must not freeze the count for ever.
        let mut p = policy();
        p.min = 2;
        p.max = 4;
        p.failure_threshold = 1;
        let d = once(&p, 7, &[Sample::Failed("timeout".into())], 1);
        assert_eq!((d.desired, d.fallback_active), (4, true));
    }

    #[test]
    fn working_rules_still_scale_up_while_another_fails() {
        let mut p = policy();
        p.rules.push(rule("other", 1.0));
        let d = once(
            &p,
            2,
            &[Sample::Value(30.0), Sample::Failed("bad".into())],
            1,
        );
        assert_eq!(d.desired, 6, "scale up on partial data");
        let d = once(
            &p,
            5,
            &[Sample::Value(1.0), Sample::Failed("bad".into())],
            1,
        );
        assert_eq!(d.desired, 5, "never down on partial data");
        assert!(matches!(d.reason, Reason::Holding { failures: 1, .. }));
    }

    #[test]
    fn empty_results_are_errors_unless_a_rule_says_zero() {
        // keda#3065: an empty result read as zero scales a busy component to zero.
        let mut p = policy();
        p.failure_threshold = 1;
        let d = once(&p, 3, &[Sample::Empty], 1);
        assert_eq!((d.desired, d.fallback_active), (3, true));
        assert!(d.outcomes[0].1.as_ref().unwrap_err().contains("no series"));
        p.rules[0].empty_is_zero = true;
        let d = once(&p, 3, &[Sample::Empty], 1);
        assert_eq!((d.desired, d.outcomes[0].1.clone()), (0, Ok(0.0)));
    }

    #[test]
    fn nan_and_inf_are_errors() {
        let p = policy();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let d = once(&p, 3, &v(x), 1);
            assert_eq!(d.desired, 3, "{x}");
            assert!(matches!(d.reason, Reason::Holding { .. }), "{x}");
        }
    }

    #[test]
    fn fallback_scales_up_from_zero() {
        // keda#7239: the fallback must apply at zero replicas too.
        let mut p = policy();
        p.failure_threshold = 2;
        p.fallback = FallbackAction::Static(3);
        let fail = || vec![Sample::Failed("connection refused".into())];
        assert_eq!(run(&p, 0, &[(1, fail()), (2, fail())]), [0, 3]);
        // keepCurrent at zero stays at zero, as it says.
        p.fallback = FallbackAction::KeepCurrent;
        assert_eq!(run(&p, 0, &[(1, fail()), (2, fail())]), [0, 0]);
    }

    #[test]
    fn a_fresh_history_does_not_scale_down_before_a_window() {
        // An operator restart forgets the recommendations; the seed stands in for them.
        let mut p = policy();
        p.min = 1;
        p.scale_down_window = S(60);
        assert_eq!(run(&p, 6, &[(30, v(5.0)), (61, v(5.0))]), [6, 1]);
    }
}
