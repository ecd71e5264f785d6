//! Platform events: what the platform itself did, as an operator wants to see it at a
//! glance — this node became the Raft leader, a node was marked down or up, a node was
//! drained, an add-on failed over, the scheduler moved or could not place dynos, a dyno
//! crashed. Each node keeps the newest [`CAPACITY`] events it made itself, in memory
//! (they are not replicated state: a restart starts an empty list); `GET /cluster/events`
//! merges those of every up node, newest first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many events a node keeps.
pub const CAPACITY: usize = 200;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// The node that made it (its name).
    pub node: String,
    /// A short class: `raft`, `node`, `scheduler`, `addon`, `dyno`.
    pub kind: String,
    pub message: String,
}

/// This node's events. Cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    node: Arc<str>,
    list: Arc<Mutex<VecDeque<Event>>>,
}

impl Events {
    /// Events made by the node called `node`.
    pub fn new(node: &str) -> Events {
        Events {
            node: Arc::from(node),
            list: Arc::default(),
        }
    }

    pub fn record(&self, kind: &str, message: impl Into<String>) {
        let ev = Event {
            at: Utc::now(),
            node: self.node.to_string(),
            kind: kind.to_string(),
            message: message.into(),
        };
        tracing::info!(kind = %ev.kind, event = %ev.message, "platform event");
        if let Ok(mut l) = self.list.lock() {
            if l.len() == CAPACITY {
                l.pop_front();
            }
            l.push_back(ev);
        }
    }

    /// This node's events, oldest first.
    pub fn list(&self) -> Vec<Event> {
        self.list
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Events of several nodes merged, newest first, at most `limit`.
pub fn merge(mut all: Vec<Event>, limit: usize) -> Vec<Event> {
    all.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.node.cmp(&b.node)));
    all.dedup();
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_its_newest_events() {
        let e = Events::new("n1");
        for i in 0..CAPACITY + 5 {
            e.record("node", format!("event {i}"));
        }
        let l = e.list();
        assert_eq!(l.len(), CAPACITY);
        assert_eq!(l[0].message, "event 5");
        assert_eq!(l.last().map(|x| x.node.as_str()), Some("n1"));
    }

    #[test]
    fn merged_events_are_newest_first_and_bounded() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
        let ev = |s, n: &str| Event {
            at: at(s),
            node: n.into(),
            kind: "node".into(),
            message: format!("{n}@{s}"),
        };
        let m = merge(vec![ev(1, "a"), ev(3, "b"), ev(2, "a"), ev(3, "b")], 2);
        assert_eq!(
            m.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["b@3", "a@2"]
        );
    }
}
