//! The add-on services Haven runs itself, and their plans.
//!
//! Service names are Heroku's (`heroku-postgresql`, `heroku-redis`), so that clients
//! written for Heroku find them; `postgres`, `postgresql` and `redis` are accepted as
//! aliases. A plan is named `service:plan` on the wire (`heroku-postgresql:essential-0`).

/// Which server an add-on of a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Debian's PostgreSQL (`postgres`, `initdb`).
    Postgres,
    /// Debian's `redis-server`.
    Redis,
}

/// An add-on service: what `GET /addon-services/{name}` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddonService {
    /// A fixed id, so that every cluster names the service alike.
    pub id: &'static str,
    /// `heroku-postgresql`.
    pub name: &'static str,
    /// `Heroku Postgres`.
    pub human_name: &'static str,
    /// Other names a client may use (`postgres`).
    pub aliases: &'static [&'static str],
    /// The start of a new add-on's name: `postgresql` → `postgresql-curved-12345`.
    pub name_prefix: &'static str,
    /// The attachment name of an app's first add-on of this service (`DATABASE`).
    pub primary_attachment: &'static str,
    /// The start of further attachment names, before a colour (`HEROKU_POSTGRESQL`).
    pub colour_prefix: &'static str,
    /// The primary attachment also sets a colour var (`HEROKU_POSTGRESQL_JADE_URL` beside
    /// `DATABASE_URL`), as Heroku Postgres does; Redis sets `REDIS_URL` alone.
    pub colour_alias_on_primary: bool,
    /// `postgres` or `redis`: the URL scheme.
    pub scheme: &'static str,
    pub engine: Engine,
    pub plans: &'static [AddonPlan],
}

/// A plan of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddonPlan {
    /// A fixed id.
    pub id: &'static str,
    /// The plan's own name, `essential-0` (the wire name adds the service).
    pub name: &'static str,
    /// `Essential 0`.
    pub human_name: &'static str,
    pub description: &'static str,
    /// Price in cents per month, as Heroku lists it (Haven bills nothing).
    pub price_cents: u64,
    /// Memory each member reserves on its node, MiB (the scheduler's unit and the
    /// server's memory quota).
    pub memory_mb: u64,
    /// Servers an add-on of this plan runs, each on its own node.
    pub members: u32,
    /// The plan a bare service name (`heroku-redis`) means.
    pub default: bool,
    /// `false`: listed, but creating one answers that it is not yet available.
    pub available: bool,
}

impl AddonPlan {
    /// `heroku-postgresql:essential-0`.
    pub fn wire_name(&self, service: &AddonService) -> String {
        format!("{}:{}", service.name, self.name)
    }
}

/// Every service Haven offers.
pub const ADDON_SERVICES: &[AddonService] = &[
    AddonService {
        id: "6c67493d-8fc2-4cd4-9161-4f1ec11cbe69",
        name: "heroku-postgresql",
        human_name: "Heroku Postgres",
        aliases: &["postgres", "postgresql"],
        name_prefix: "postgresql",
        primary_attachment: "DATABASE",
        colour_prefix: "HEROKU_POSTGRESQL",
        colour_alias_on_primary: true,
        scheme: "postgres",
        engine: Engine::Postgres,
        plans: &[
            AddonPlan {
                id: "7f41a0e3-3c1b-4a8e-9d55-2f0b9c7f6a01",
                name: "essential-0",
                human_name: "Essential 0",
                description: "PostgreSQL 15 on one node: no standby, no automatic failover",
                price_cents: 500,
                memory_mb: 256,
                members: 1,
                default: true,
                available: true,
            },
            AddonPlan {
                id: "7f41a0e3-3c1b-4a8e-9d55-2f0b9c7f6a02",
                name: "standard-0",
                human_name: "Standard 0",
                description: "PostgreSQL 15 with a synchronous standby on another node and automatic failover",
                price_cents: 5000,
                memory_mb: 1024,
                members: 2,
                default: false,
                available: true,
            },
        ],
    },
    AddonService {
        id: "4b3a1c1e-5d8f-4a7e-8d0c-0b6a6f3c2e10",
        name: "heroku-redis",
        human_name: "Heroku Key-Value Store",
        aliases: &["redis"],
        name_prefix: "redis",
        primary_attachment: "REDIS",
        colour_prefix: "HEROKU_REDIS",
        colour_alias_on_primary: false,
        scheme: "redis",
        engine: Engine::Redis,
        plans: &[
            AddonPlan {
                id: "9a2e5f70-1b6c-4c3d-8e9f-3a4b5c6d7e01",
                name: "mini",
                human_name: "Mini",
                description: "Redis 7 on one node, 25 MB: no replica, no automatic failover",
                price_cents: 300,
                memory_mb: 64,
                members: 1,
                default: true,
                available: true,
            },
            AddonPlan {
                id: "9a2e5f70-1b6c-4c3d-8e9f-3a4b5c6d7e02",
                name: "premium-0",
                human_name: "Premium 0",
                description: "Redis 7 with a replica on another node and automatic failover (asynchronous: a failover may lose the last seconds of writes)",
                price_cents: 1500,
                memory_mb: 128,
                members: 2,
                default: false,
                available: true,
            },
        ],
    },
];

/// The service called `name` (its name, an alias or its id), ignoring case and
/// surrounding spaces.
pub fn addon_service(name: &str) -> Option<&'static AddonService> {
    let name = name.trim();
    ADDON_SERVICES.iter().find(|s| {
        s.name.eq_ignore_ascii_case(name)
            || s.id.eq_ignore_ascii_case(name)
            || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// A plan of `service` by its name (`essential-0`), wire name
/// (`heroku-postgresql:essential-0`) or id.
pub fn service_plan(service: &'static AddonService, plan: &str) -> Option<&'static AddonPlan> {
    let plan = plan.trim();
    let own = match plan.split_once(':') {
        Some((svc, p)) if addon_service(svc) == Some(service) => p,
        Some(_) => return None,
        None => plan,
    };
    service
        .plans
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(own) || p.id.eq_ignore_ascii_case(plan))
}

/// The service and plan a client names: `service:plan`, `service` (its default plan) or a
/// plan id. `None` when either is unknown.
pub fn addon_plan(spec: &str) -> Option<(&'static AddonService, &'static AddonPlan)> {
    let spec = spec.trim();
    if let Some((svc, plan)) = spec.split_once(':') {
        let service = addon_service(svc)?;
        return Some((service, service_plan(service, plan)?));
    }
    if let Some(service) = addon_service(spec) {
        return Some((service, service.plans.iter().find(|p| p.default)?));
    }
    ADDON_SERVICES.iter().find_map(|s| {
        s.plans
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(spec))
            .map(|p| (s, p))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_found_by_service_alias_and_id() {
        let cases = [
            (
                "heroku-postgresql:essential-0",
                Some(("heroku-postgresql", "essential-0")),
            ),
            (
                "postgres:essential-0",
                Some(("heroku-postgresql", "essential-0")),
            ),
            ("postgresql", Some(("heroku-postgresql", "essential-0"))),
            (
                "heroku-postgresql:standard-0",
                Some(("heroku-postgresql", "standard-0")),
            ),
            ("Redis", Some(("heroku-redis", "mini"))),
            ("redis:premium-0", Some(("heroku-redis", "premium-0"))),
            (" heroku-redis:mini ", Some(("heroku-redis", "mini"))),
            (
                "9a2e5f70-1b6c-4c3d-8e9f-3a4b5c6d7e01",
                Some(("heroku-redis", "mini")),
            ),
            ("heroku-postgresql:mini", None),
            ("mysql", None),
            ("mysql:mini", None),
            ("", None),
        ];
        for (spec, want) in cases {
            let got = addon_plan(spec).map(|(s, p)| (s.name, p.name));
            assert_eq!(got, want, "{spec:?}");
        }
    }

    #[test]
    fn every_service_has_one_available_default_plan_and_unique_ids() {
        let mut ids = Vec::new();
        for s in ADDON_SERVICES {
            let defaults: Vec<_> = s.plans.iter().filter(|p| p.default).collect();
            assert_eq!(defaults.len(), 1, "{}", s.name);
            assert!(defaults[0].available && defaults[0].members == 1);
            ids.push(s.id);
            ids.extend(s.plans.iter().map(|p| p.id));
            for p in s.plans {
                assert_eq!(service_plan(s, &p.wire_name(s)), Some(p));
                assert!(p.members >= 1 && p.memory_mb > 0);
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
