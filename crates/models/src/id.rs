//! Model ids double as folder names under the models dir, so they are restricted to a safe
//! alphabet: nothing that could escape the directory or hide the folder.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted; long enough for `owner--repo--revision` style names.
const MAX_ID_LEN: usize = 120;

/// A validated model id, e.g. `imp-v1.5-3b-phi2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model id {id:?}: {reason}; use letters, digits, '.', '-' or '_' (not starting with '.' or '-')")]
pub struct InvalidModelId {
    pub id: String,
    pub reason: &'static str,
}

impl ModelId {
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidModelId> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > MAX_ID_LEN {
            Some("it is longer than 120 characters")
        } else if id.starts_with('.') || id.starts_with('-') {
            Some("it starts with '.' or '-'")
        } else if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            Some("it contains a character other than letters, digits, '.', '-' and '_'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidModelId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ModelId {
    type Error = InvalidModelId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ModelId> for String {
    fn from(value: ModelId) -> Self {
        value.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ModelId {
    type Err = InvalidModelId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_catalog_style_ids() {
        assert!(ModelId::new("imp-v1.5-3b-phi2").is_ok());
        assert!(ModelId::new("My_Model.2").is_ok());
    }

    #[test]
    fn rejects_ids_that_could_escape_or_hide_the_folder() {
        for bad in ["", "..", ".hidden", "-x", "a/b", "a\\b", "a b", "ü"] {
            assert!(ModelId::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ModelId::new("x".repeat(121)).is_err());
    }
}
