//! A model version's life: one state machine, enforced by the repository with conditional
//! writes so two concurrent events can never both move a model.
//!
//! `training → staged | failed`; `staged → deploying | rejected`; `deploying → deployed |
//! deploy_failed`; `deploy_failed → deploying` (accept again); `deployed → superseded` (another
//! was deployed; it can be rolled back to: `superseded → deploying`); `superseded → retired`
//! (its endpoint config deleted; no longer a rollback target).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    Training,
    Staged,
    Failed,
    Deploying,
    Rejected,
    Deployed,
    DeployFailed,
    Superseded,
    Retired,
}

impl ModelStatus {
    pub const ALL: [ModelStatus; 9] = [
        ModelStatus::Training,
        ModelStatus::Staged,
        ModelStatus::Failed,
        ModelStatus::Deploying,
        ModelStatus::Rejected,
        ModelStatus::Deployed,
        ModelStatus::DeployFailed,
        ModelStatus::Superseded,
        ModelStatus::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Training => "training",
            ModelStatus::Staged => "staged",
            ModelStatus::Failed => "failed",
            ModelStatus::Deploying => "deploying",
            ModelStatus::Rejected => "rejected",
            ModelStatus::Deployed => "deployed",
            ModelStatus::DeployFailed => "deploy_failed",
            ModelStatus::Superseded => "superseded",
            ModelStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<ModelStatus> {
        ModelStatus::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The states this one may move to.
    pub fn next(self) -> &'static [ModelStatus] {
        use ModelStatus::*;
        match self {
            Training => &[Staged, Failed],
            Staged => &[Deploying, Rejected],
            Deploying => &[Deployed, DeployFailed],
            DeployFailed => &[Deploying],
            Deployed => &[Superseded],
            Superseded => &[Deploying, Retired],
            Failed | Rejected | Retired => &[],
        }
    }

    pub fn can_move_to(self, to: ModelStatus) -> bool {
        self.next().contains(&to)
    }

    /// States from which a person may accept the model (start deploying it).
    pub fn acceptable(self) -> bool {
        matches!(self, ModelStatus::Staged | ModelStatus::DeployFailed)
    }

    /// States a rollback may return to.
    pub fn rollback_target(self) -> bool {
        self == ModelStatus::Superseded
    }
}

impl std::fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ModelStatus::*;
    use super::*;

    #[test]
    fn the_documented_transitions_and_no_others() {
        let allowed = [
            (Training, Staged),
            (Training, Failed),
            (Staged, Deploying),
            (Staged, Rejected),
            (Deploying, Deployed),
            (Deploying, DeployFailed),
            (DeployFailed, Deploying),
            (Deployed, Superseded),
            (Superseded, Deploying),
            (Superseded, Retired),
        ];
        for from in ModelStatus::ALL {
            for to in ModelStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip_in_snake_case() {
        for s in ModelStatus::ALL {
            assert_eq!(ModelStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(DeployFailed.as_str(), "deploy_failed");
        assert!(DeployFailed.acceptable() && Staged.acceptable() && !Deployed.acceptable());
        assert!(Superseded.rollback_target() && !Retired.rollback_target());
    }
}
