//! The role of an API token, shared by AppTracker (which enforces it) and
//! the clients that create tokens. People hold `viewer`, `deployer` or
//! `admin`; host agents `agent`; packer workers `builder`. A role this
//! build does not know decodes as [`Role::Unknown`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a token may do. People's roles are ordered: each includes the one
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also builds and deploys.
    Deployer,
    /// Also registers apps and manages tokens; may act for any cluster.
    Admin,
    /// A host agent (grabber, versionchecker) of one cluster, or of one
    /// host when the token names it.
    Agent,
    /// A packer worker: claims builds, streams their logs, uploads their
    /// artifacts and reports them; nothing else.
    Builder,
    /// A role this build does not know (a newer server's); allows nothing.
    #[serde(other)]
    Unknown,
}

impl Role {
    /// Every known role.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Deployer,
        Role::Admin,
        Role::Agent,
        Role::Builder,
    ];

    /// The role as it appears in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Builder => "builder",
            Role::Unknown => "unknown",
        }
    }

    /// A person's role (viewer, deployer, admin), as opposed to a program's.
    pub fn is_person(self) -> bool {
        matches!(self, Role::Viewer | Role::Deployer | Role::Admin)
    }

    /// The known role named `s`; None for any other text.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_their_names_in_json() {
        for role in Role::ALL {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(
            serde_json::from_str::<Role>("\"auditor\"").unwrap(),
            Role::Unknown
        );
        assert_eq!(Role::parse("unknown"), None);
    }

    #[test]
    fn people_roles_are_ordered() {
        assert!(Role::Viewer < Role::Deployer && Role::Deployer < Role::Admin);
        assert!(Role::Admin.is_person() && !Role::Agent.is_person());
    }
}
