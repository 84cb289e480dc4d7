//! The merge policy a project declares (TOML, carried by its `tagline/project`
//! entry). Unknown keys are refused, so a typo in a policy is an error the
//! lead sees, not a rule silently dropped.
//!
//! ```toml
//! [ci]
//! required = ["test"]              # contexts that must pass on the latest revision
//!
//! [review]
//! min_reviewed_by = 2              # distinct identities, on every patch
//! reviewer_roles = ["maintainer", "reviewer", "committer"]   # or "any"
//! require_maintainer_ack = true    # Acked-by (or Reviewed-by) from a maintainer
//!                                  # of the code every file touches
//! nack_blocks = true               # a maintainer's Nacked-by blocks
//!
//! [consensus]
//! quiet_period_hours = 72          # lazy consensus after approval
//!
//! [[freeze]]
//! name = "feature freeze 4.21"
//! start = 2026-11-01T00:00:00Z
//! end = 2026-12-01T00:00:00Z
//!
//! [labels]
//! rfc = "RFC"
//! freeze_exception = "freeze-exception-granted"
//! rejected = "rejected"
//!
//! [dco]
//! require_signed_off_by = true
//! ```

use serde::Deserialize;

/// A policy could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("merge policy: {0}")]
pub struct PolicyError(pub String);

/// Who may give a Reviewed-by that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Any identity (anyone with an identity feed; beware of sybils).
    Any,
    Maintainer,
    Reviewer,
    Committer,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiPolicy {
    #[serde(default)]
    pub required: Vec<String>,
}

fn default_roles() -> Vec<Role> {
    vec![Role::Maintainer, Role::Reviewer, Role::Committer]
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewPolicy {
    #[serde(default)]
    pub min_reviewed_by: u32,
    #[serde(default = "default_roles")]
    pub reviewer_roles: Vec<Role>,
    #[serde(default)]
    pub require_maintainer_ack: bool,
    #[serde(default = "yes")]
    pub nack_blocks: bool,
    /// A trailer a trusted bridge vouched for counts for an address the
    /// MAINTAINERS file lists (M:, R:) even when no identity has verified
    /// it: the person at that address, as MAINTAINERS names them. Only with
    /// the project's `maintainers_file`.
    #[serde(default)]
    pub maintainers_file_addresses: bool,
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        ReviewPolicy {
            min_reviewed_by: 0,
            reviewer_roles: default_roles(),
            require_maintainer_ack: false,
            nack_blocks: true,
            maintainers_file_addresses: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusPolicy {
    #[serde(default)]
    pub quiet_period_hours: u64,
}

/// A release freeze: only series with the exception label pass while it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreeze {
    name: String,
    start: toml::value::Datetime,
    end: toml::value::Datetime,
}

fn label(s: &str) -> String {
    s.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    #[serde(default = "rfc")]
    pub rfc: String,
    #[serde(default = "freeze_exception")]
    pub freeze_exception: String,
    #[serde(default = "rejected")]
    pub rejected: String,
}
fn rfc() -> String {
    label("RFC")
}
fn freeze_exception() -> String {
    label("freeze-exception-granted")
}
fn rejected() -> String {
    label("rejected")
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            rfc: rfc(),
            freeze_exception: freeze_exception(),
            rejected: rejected(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcoPolicy {
    #[serde(default = "yes")]
    pub require_signed_off_by: bool,
}

impl Default for DcoPolicy {
    fn default() -> Self {
        DcoPolicy {
            require_signed_off_by: true,
        }
    }
}

/// Who may amend the project declaration besides its lead.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmendPolicy {
    /// Distinct declared maintainers who must publish the same amendment for
    /// it to take effect; 0 (the default) means only the lead amends.
    #[serde(default)]
    pub maintainer_quorum: u64,
}

/// What the gate does besides checking the rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// The gate tests the merge result (the series applied on the target
    /// branch as it is, with whatever merged since the series' CI ran)
    /// before moving the branch, and records the pass as a CI result of
    /// context `gate` that its merge entry cites:
    /// the required CI contexts ran on the revision at its base, not on what
    /// the branch will hold.
    #[serde(default)]
    pub retest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    ci: CiPolicy,
    #[serde(default)]
    review: ReviewPolicy,
    #[serde(default)]
    consensus: ConsensusPolicy,
    #[serde(default)]
    freeze: Vec<RawFreeze>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    dco: DcoPolicy,
    #[serde(default)]
    amend: AmendPolicy,
    #[serde(default)]
    gate: GatePolicy,
}

/// A project's merge policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub ci: CiPolicy,
    pub review: ReviewPolicy,
    pub consensus: ConsensusPolicy,
    pub freezes: Vec<Freeze>,
    pub labels: Labels,
    pub dco: DcoPolicy,
    pub amend: AmendPolicy,
    pub gate: GatePolicy,
}

/// Milliseconds since the epoch of a TOML date-time (UTC; offsets applied).
fn epoch_ms(d: &toml::value::Datetime) -> Result<u64, PolicyError> {
    let date = d
        .date
        .ok_or_else(|| PolicyError(format!("{d}: a freeze needs a date")))?;
    let (y, m, day) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    // days_from_civil (proleptic Gregorian).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut secs = days * 86_400;
    if let Some(t) = d.time {
        secs +=
            i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second.unwrap_or(0));
    }
    if let Some(toml::value::Offset::Custom { minutes }) = d.offset {
        secs -= i64::from(minutes) * 60;
    }
    u64::try_from(secs * 1000).map_err(|_| PolicyError(format!("{d} is before 1970")))
}

impl Policy {
    /// Parses policy TOML. An empty string is the default policy.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text)
            .map_err(|e| PolicyError(e.to_string().trim().replace('\n', " ")))?;
        let freezes = raw
            .freeze
            .iter()
            .map(|f| {
                let (start_ms, end_ms) = (epoch_ms(&f.start)?, epoch_ms(&f.end)?);
                if end_ms <= start_ms {
                    return Err(PolicyError(format!(
                        "freeze {:?} ends before it starts",
                        f.name
                    )));
                }
                Ok(Freeze {
                    name: f.name.clone(),
                    start_ms,
                    end_ms,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            ci: raw.ci,
            review: raw.review,
            consensus: raw.consensus,
            freezes,
            labels: raw.labels,
            dco: raw.dco,
            amend: raw.amend,
            gate: raw.gate,
        })
    }

    /// The freeze in force at `now_ms`, if any.
    pub fn freeze_at(&self, now_ms: u64) -> Option<&Freeze> {
        self.freezes
            .iter()
            .find(|f| now_ms >= f.start_ms && now_ms < f.end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let p = Policy::parse(
            "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 2\nrequire_maintainer_ack = true\n[consensus]\nquiet_period_hours = 72\n[[freeze]]\nname = \"ff\"\nstart = 2026-11-01T00:00:00Z\nend = 2026-12-01T00:00:00Z\n",
        )
        .unwrap();
        assert_eq!(p.ci.required, ["test"]);
        assert_eq!(p.review.min_reviewed_by, 2);
        assert!(p.review.nack_blocks);
        assert_eq!(p.freezes[0].start_ms, 1_793_491_200_000);
        assert!(p.freeze_at(1_793_491_200_000).is_some());
        assert!(p.freeze_at(1_793_491_199_999).is_none());
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
        assert!(!Policy::default().gate.retest);
        assert!(
            Policy::parse("[gate]\nretest = true\n")
                .unwrap()
                .gate
                .retest
        );
    }

    #[test]
    fn typos_are_errors() {
        let e = Policy::parse("[review]\nmin_reviewd_by = 2\n").unwrap_err();
        assert!(e.0.contains("min_reviewd_by"), "{e}");
        assert!(Policy::parse("[review]\nreviewer_roles = [\"boss\"]\n").is_err());
        assert!(Policy::parse("[[freeze]]\nname = \"x\"\nstart = 2026-12-01T00:00:00Z\nend = 2026-11-01T00:00:00Z\n").is_err());
    }
}
