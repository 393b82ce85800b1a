//! Rollout arithmetic shared by AppTracker and the CLI: a [`Portion`] of
//! hosts and the [`Strategy`] that cuts a deploy's hosts into batches.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A number of hosts, or a share of the deploy's hosts: `3` or `"25%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Portion {
    Count(u32),
    Percent(u8),
}

impl Default for Portion {
    fn default() -> Self {
        Portion::Count(0)
    }
}

impl Portion {
    /// Parses `3` or `25%` (0–100).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a number of hosts or a percentage like 25%");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Portion::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse::<u32>().map(Portion::Count).map_err(|_| bad()),
        }
    }

    /// How many of `total` hosts this is (a percentage rounds up, so 10% of
    /// 5 hosts is one host).
    pub fn of(self, total: usize) -> usize {
        match self {
            Portion::Count(n) => (n as usize).min(total),
            Portion::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

impl std::fmt::Display for Portion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Portion::Count(n) => write!(f, "{n}"),
            Portion::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Portion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Portion::parse(s)
    }
}

impl Serialize for Portion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Portion::Count(n) => s.serialize_u32(*n),
            Portion::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Portion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Portion::Count(n)),
            Raw::S(s) => Portion::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// How a deploy takes its hosts. A batch starts when every host of the one
/// before it is done (or failed, within `max_failures`), so at most a
/// batch's hosts are between stopping the old release and a healthy new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    AllAtOnce,
    /// Batches of `batch` hosts (at least one), `bake_ms` apart. With
    /// `max_unavailable` above the batch size, batches overlap: the next
    /// starts as soon as it fits beside the hosts still under way (`batch:
    /// 1, max_unavailable: 3` is a sliding window of three).
    Rolling {
        batch: Portion,
        #[serde(default)]
        bake_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_unavailable: Option<Portion>,
    },
    /// `canary` hosts first; the rest, in one batch, once they are healthy
    /// (and `bake_ms` later; with `manual`, only once someone continues the
    /// deploy: `POST /api/v1/deploys/{id}/continue`).
    Canary {
        canary: Portion,
        #[serde(default)]
        bake_ms: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        manual: bool,
    },
}

impl Strategy {
    /// The batches of `hosts`, in order: each host in exactly one.
    pub fn batches<T: Clone>(&self, hosts: &[T]) -> Vec<Vec<T>> {
        let n = hosts.len();
        match *self {
            Strategy::AllAtOnce => vec![hosts.to_vec()],
            Strategy::Rolling { batch, .. } => {
                let size = batch.of(n).max(1);
                hosts.chunks(size).map(<[T]>::to_vec).collect()
            }
            Strategy::Canary { canary, .. } => {
                let first = canary.of(n).clamp(1, n.max(1));
                let (a, b) = hosts.split_at(first.min(n));
                [a.to_vec(), b.to_vec()]
                    .into_iter()
                    .filter(|b| !b.is_empty())
                    .collect()
            }
        }
    }

    /// With overlapping batches, how many of `total` hosts may be under way
    /// at once; None when batches go one after another.
    pub fn window(&self, total: usize) -> Option<usize> {
        match *self {
            Strategy::Rolling {
                batch,
                max_unavailable: Some(m),
                ..
            } => {
                let m = m.of(total).max(1);
                (m > batch.of(total).max(1)).then_some(m)
            }
            _ => None,
        }
    }

    /// Why this strategy cannot deploy `total` hosts, if it cannot.
    pub fn check(&self, total: usize) -> Result<(), String> {
        if let Strategy::Rolling {
            batch,
            bake_ms,
            max_unavailable: Some(m),
        } = *self
        {
            let (b, m) = (batch.of(total).max(1), m.of(total).max(1));
            if m < b {
                return Err(format!(
                    "max_unavailable {m} is below the batch size {b}: a batch could never start"
                ));
            }
            if m > b && bake_ms > 0 {
                return Err(
                    "bake_ms needs batches one after another: drop it or make max_unavailable the batch size"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Whether batch `next` waits for a human to continue the deploy.
    pub fn waits_for_continue(&self, next: u32) -> bool {
        matches!(*self, Strategy::Canary { manual: true, .. }) && next >= 1
    }

    /// The wait between two batches.
    pub fn bake_ms(&self) -> u64 {
        match *self {
            Strategy::AllAtOnce => 0,
            Strategy::Rolling { bake_ms, .. } | Strategy::Canary { bake_ms, .. } => bake_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portions_parse_and_count() {
        assert_eq!(Portion::parse("3"), Ok(Portion::Count(3)));
        assert_eq!(Portion::parse("25%"), Ok(Portion::Percent(25)));
        assert!(Portion::parse("101%").unwrap_err().contains("101%"));
        assert!(Portion::parse("-1").is_err());
        assert!(Portion::parse("a few").is_err());
        assert_eq!(Portion::Percent(10).of(5), 1, "rounds up");
        assert_eq!(Portion::Percent(30).of(10), 3);
        assert_eq!(Portion::Count(20).of(10), 10);
        let json: Vec<Portion> = serde_json::from_str(r#"[3, "25%"]"#).unwrap();
        assert_eq!(json, [Portion::Count(3), Portion::Percent(25)]);
        assert_eq!(serde_json::to_string(&json).unwrap(), r#"[3,"25%"]"#);
        assert!(serde_json::from_str::<Portion>(r#""lots""#).is_err());
    }

    #[test]
    fn strategies_cut_batches() {
        let hosts: Vec<u32> = (1..=10).collect();
        let rolling = Strategy::Rolling {
            batch: Portion::Count(3),
            bake_ms: 0,
            max_unavailable: None,
        };
        assert_eq!(
            rolling.batches(&hosts),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        let canary = Strategy::Canary {
            canary: Portion::Percent(10),
            bake_ms: 0,
            manual: false,
        };
        assert_eq!(canary.batches(&hosts), vec![vec![1], (2..=10).collect()]);
        assert_eq!(Strategy::AllAtOnce.batches(&hosts), vec![hosts.clone()]);
        // A batch is never empty, and a zero batch size still moves.
        let zero = Strategy::Rolling {
            batch: Portion::Count(0),
            bake_ms: 0,
            max_unavailable: None,
        };
        // A window wider than the batch overlaps batches; as wide, it does not.
        let window = |batch, m, bake_ms| Strategy::Rolling {
            batch: Portion::Count(batch),
            bake_ms,
            max_unavailable: Some(m),
        };
        assert_eq!(window(1, Portion::Count(3), 0).window(10), Some(3));
        assert_eq!(window(2, Portion::Percent(50), 0).window(10), Some(5));
        assert_eq!(window(3, Portion::Count(3), 0).window(10), None);
        assert_eq!(rolling.window(10), None);
        assert!(window(3, Portion::Count(3), 5).check(10).is_ok());
        let e = window(3, Portion::Count(2), 0).check(10).unwrap_err();
        assert!(e.contains("below the batch size 3"), "{e}");
        let e = window(1, Portion::Count(3), 5).check(10).unwrap_err();
        assert!(e.contains("bake_ms"), "{e}");
        assert_eq!(zero.batches(&[1, 2]), vec![vec![1], vec![2]]);
        let all_canary = Strategy::Canary {
            canary: Portion::Count(5),
            bake_ms: 0,
            manual: true,
        };
        assert_eq!(all_canary.batches(&[1, 2]), vec![vec![1, 2]]);
        // Only what follows the canaries of a manual canary waits.
        assert!(!all_canary.waits_for_continue(0));
        assert!(all_canary.waits_for_continue(1));
        assert!(!canary.waits_for_continue(1));
        // `manual` is optional on the wire and left out when false.
        let parsed: Strategy =
            serde_json::from_str(r#"{"kind": "canary", "canary": "10%"}"#).unwrap();
        assert_eq!(parsed, canary);
        assert_eq!(
            serde_json::to_value(canary).unwrap(),
            serde_json::json!({"kind": "canary", "canary": "10%", "bake_ms": 0})
        );
        let json = serde_json::to_value(rolling).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "rolling", "batch": 3, "bake_ms": 0})
        );
    }
}
