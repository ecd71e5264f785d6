//! `ConfigVars`: one version of an app's config vars, shared rather than copied.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One version of an app's config vars. Cloning shares the map: the app's current config
/// and the release that introduced it (and every release that kept it, such as a deploy)
/// hold the same allocation. A change makes a new version ([`ConfigVars::changed`]).
///
/// Serialized exactly as the `BTreeMap` it wraps (bincode and JSON alike), so the log and
/// snapshot format is the one a plain map had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigVars(Arc<BTreeMap<String, String>>);

impl ConfigVars {
    pub fn new(map: BTreeMap<String, String>) -> ConfigVars {
        ConfigVars(Arc::new(map))
    }

    /// A new version: these vars with `f` applied to a copy.
    pub fn changed(&self, f: impl FnOnce(&mut BTreeMap<String, String>)) -> ConfigVars {
        let mut map = (*self.0).clone();
        f(&mut map);
        ConfigVars::new(map)
    }

    /// A copy of the map (for an environment that gets more vars).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        (*self.0).clone()
    }

    /// Whether `self` and `other` share one allocation.
    pub fn shares(&self, other: &ConfigVars) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for ConfigVars {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl From<BTreeMap<String, String>> for ConfigVars {
    fn from(map: BTreeMap<String, String>) -> ConfigVars {
        ConfigVars::new(map)
    }
}

impl Serialize for ConfigVars {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConfigVars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConfigVars, D::Error> {
        BTreeMap::deserialize(d).map(ConfigVars::new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_plain_map_and_clones_share() {
        let map = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let vars = ConfigVars::new(map.clone());
        assert_eq!(
            bincode::serialize(&vars).unwrap(),
            bincode::serialize(&map).unwrap()
        );
        let back: ConfigVars = bincode::deserialize(&bincode::serialize(&map).unwrap()).unwrap();
        assert_eq!(back, vars);
        assert_eq!(serde_json::to_string(&vars).unwrap(), r#"{"A":"1"}"#);
        let copy = vars.clone();
        assert!(copy.shares(&vars));
        let next = vars.changed(|m| {
            m.insert("B".into(), "2".into());
        });
        assert!(!next.shares(&vars));
        assert_eq!(next.len(), 2);
        assert_eq!(vars.len(), 1);
    }
}
