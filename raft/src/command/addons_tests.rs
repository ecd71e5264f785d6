use chrono::DateTime;
use uuid::Uuid;

use super::*;
use crate::command::fixtures::{actor, create as create_app};
use crate::command::{failover_target, Command};
use crate::model::{AddonMember, Node, NodeStatus, Role};

fn add_node(s: &mut State, id: NodeId, host: &str) {
    s.nodes.insert(
        id,
        Node {
            id,
            name: format!("node-{id}"),
            peer_addr: format!("{host}:7000"),
            api_url: format!("http://{host}:7001"),
            router_url: format!("http://{host}:7002"),
            memory_mb: 4096,
            cpus: 2,
            labels: Default::default(),
            status: NodeStatus::Up,
            draining: false,
            joined_at: DateTime::from_timestamp(0, 0).unwrap(),
        },
    );
}

fn addon(app: Uuid, name: &str, service: &str, plan: &str, node: NodeId, port: u16) -> Addon {
    Addon {
        id: Uuid::new_v4(),
        name: name.into(),
        service: service.into(),
        plan: plan.into(),
        app,
        state: AddonState::Provisioning,
        password: "p4ssw0rdp4ssw0rdp4ss".into(),
        members: vec![AddonMember {
            id: Uuid::new_v4(),
            node,
            host: "10.0.0.1".into(),
            port,
            up: false,
            streaming: false,
            synced: false,
        }],
        created_at: DateTime::from_timestamp(0, 0).unwrap(),
        updated_at: DateTime::from_timestamp(0, 0).unwrap(),
        primary: None,
        generation: 0,
        provider_resource: None,
        provider_config: Default::default(),
    }
}

fn create_cmd(a: &Addon, as_name: Option<&str>) -> Command {
    Command::CreateAddon {
        addon: a.clone(),
        attachment: AttachmentSpec {
            id: Uuid::new_v4(),
            app: a.app,
            name: as_name.map(str::to_string),
        },
        release_id: Uuid::new_v4(),
        actor: actor(5),
    }
}

fn setup() -> (State, Uuid) {
    let mut s = State::default();
    add_node(&mut s, 1, "10.0.0.1");
    let app = create_app(&mut s, "my-app");
    (s, app)
}

fn descriptions(s: &State, app: Uuid) -> Vec<String> {
    s.apps[&app]
        .releases
        .iter()
        .map(|r| r.description.clone())
        .collect()
}

#[test]
fn create_attaches_sets_database_url_and_a_colour_in_one_release() {
    let (mut s, app) = setup();
    let a = addon(
        app,
        "postgresql-curved-12345",
        "heroku-postgresql",
        "essential-0",
        1,
        5432,
    );
    let out = create_cmd(&a, None).apply(&mut s).unwrap();
    let CommandOutput::Addon {
        attachments,
        releases,
        ..
    } = out
    else {
        panic!()
    };
    assert_eq!(attachments[0].name, "DATABASE");
    assert_eq!(releases, vec![(app, 2)]);
    let cfg = &s.apps[&app].config;
    let url = a.url().unwrap();
    assert!(
        url.starts_with("postgres://u") && url.contains("@10.0.0.1:5432/d"),
        "{url}"
    );
    assert_eq!(cfg["DATABASE_URL"], url);
    let colour: Vec<&String> = cfg
        .keys()
        .filter(|k| k.starts_with("HEROKU_POSTGRESQL_"))
        .collect();
    assert_eq!(colour.len(), 1, "{cfg:?}");
    assert_eq!(
        descriptions(&s, app).last().unwrap(),
        "Attach DATABASE (@ref:postgresql-curved-12345)"
    );
    // A second Postgres gets only a colour var; a Redis REDIS_URL; --as NAME_URL.
    let b = addon(
        app,
        "postgresql-flat-00001",
        "heroku-postgresql",
        "essential-0",
        1,
        5433,
    );
    create_cmd(&b, None).apply(&mut s).unwrap();
    let r = addon(app, "redis-round-00002", "heroku-redis", "mini", 1, 6379);
    create_cmd(&r, None).apply(&mut s).unwrap();
    let c = addon(
        app,
        "postgresql-deep-00003",
        "heroku-postgresql",
        "essential-0",
        1,
        5434,
    );
    create_cmd(&c, Some("analytics")).apply(&mut s).unwrap();
    let cfg = &s.apps[&app].config;
    assert_eq!(cfg["DATABASE_URL"], url);
    assert_eq!(
        cfg.keys()
            .filter(|k| k.starts_with("HEROKU_POSTGRESQL_"))
            .count(),
        2
    );
    assert_eq!(cfg["REDIS_URL"], r.url().unwrap());
    assert!(cfg["REDIS_URL"].starts_with("redis://default:p4ssw0rd"));
    assert_eq!(cfg["ANALYTICS_URL"], c.url().unwrap());
    assert_eq!(s.apps[&app].releases.len(), 5);
}

#[test]
fn bad_creates_change_nothing() {
    let (mut s, app) = setup();
    let a = addon(app, "db-one", "heroku-postgresql", "essential-0", 1, 5432);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let before = s.clone();
    let cases: Vec<(Addon, Option<&str>)> = vec![
        // Duplicate name.
        (
            addon(app, "db-one", "heroku-postgresql", "essential-0", 1, 5440),
            None,
        ),
        // Unknown plan and service.
        (
            addon(app, "db-two", "heroku-postgresql", "huge-9", 1, 5440),
            None,
        ),
        (addon(app, "db-two", "mysql", "mini", 1, 5440), None),
        // Fewer members than the plan runs.
        (
            addon(app, "db-two", "heroku-redis", "premium-0", 1, 5440),
            None,
        ),
        // Port taken on that address; unknown node.
        (
            addon(app, "db-two", "heroku-postgresql", "essential-0", 1, 5432),
            None,
        ),
        (
            addon(app, "db-two", "heroku-postgresql", "essential-0", 9, 5440),
            None,
        ),
        // Bad and taken attachment names.
        (
            addon(app, "db-two", "heroku-postgresql", "essential-0", 1, 5440),
            Some("1bad"),
        ),
        (
            addon(app, "db-two", "heroku-postgresql", "essential-0", 1, 5440),
            Some("DATABASE"),
        ),
        // Invalid name.
        (
            addon(app, "2db", "heroku-postgresql", "essential-0", 1, 5440),
            None,
        ),
    ];
    for (a, as_name) in cases {
        let got = create_cmd(&a, as_name).apply(&mut s);
        assert!(got.is_err(), "{} {as_name:?} was accepted", a.name);
        assert_eq!(s, before, "{} {as_name:?} changed the state", a.name);
    }
    let mut no_app = addon(
        Uuid::new_v4(),
        "db-two",
        "heroku-postgresql",
        "essential-0",
        1,
        5440,
    );
    no_app.members[0].port = 5441;
    assert!(matches!(
        create_cmd(&no_app, None).apply(&mut s),
        Err(CommandError::AppNotFound(_))
    ));
    assert_eq!(s, before);
}

#[test]
fn reports_provision_and_deprovisioning_removes_the_addon_when_data_is_gone() {
    let (mut s, app) = setup();
    let a = addon(app, "db-one", "heroku-postgresql", "essential-0", 1, 5432);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let m = a.members[0].id;
    let report = |node, up, gone: Vec<Uuid>| Command::ReportAddonMembers {
        node,
        reports: vec![MemberReport {
            member: m,
            up,
            ..MemberReport::default()
        }],
        gone,
        at: actor(9).at,
    };
    // Another node's report of this member is ignored.
    report(2, true, vec![]).apply(&mut s).unwrap();
    assert_eq!(s.addons[&a.id].state, AddonState::Provisioning);
    report(1, true, vec![m]).apply(&mut s).unwrap();
    assert_eq!(s.addons[&a.id].state, AddonState::Provisioned);
    assert_eq!(
        s.addons[&a.id].members.len(),
        1,
        "gone is ignored unless deprovisioning"
    );
    Command::DestroyAddon {
        addon: a.id,
        release_seed: Uuid::new_v4(),
        actor: actor(10),
    }
    .apply(&mut s)
    .unwrap();
    assert_eq!(s.addons[&a.id].state, AddonState::Deprovisioning);
    assert!(s.attachments.is_empty());
    assert!(!s.apps[&app].config.keys().any(|k| k.ends_with("_URL")));
    assert_eq!(
        descriptions(&s, app).last().unwrap(),
        "Detach DATABASE (@ref:db-one)"
    );
    report(1, false, vec![m]).apply(&mut s).unwrap();
    assert!(s.addons.is_empty());
}

#[test]
fn sharing_attach_detach_and_app_deletion() {
    let (mut s, app) = setup();
    let other = create_app(&mut s, "other-app");
    let a = addon(app, "cache-one", "heroku-redis", "mini", 1, 6379);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let spec = |app, name: Option<&str>| AttachmentSpec {
        id: Uuid::new_v4(),
        app,
        name: name.map(str::to_string),
    };
    let shared = spec(other, None);
    Command::AttachAddon {
        addon: a.id,
        attachment: shared.clone(),
        release_id: Uuid::new_v4(),
        actor: actor(6),
    }
    .apply(&mut s)
    .unwrap();
    assert_eq!(s.apps[&other].config["REDIS_URL"], a.url().unwrap());
    assert_eq!(
        descriptions(&s, other).last().unwrap(),
        "Attach REDIS (@ref:cache-one)"
    );
    // --as on the same app: a second attachment; the same name again is refused.
    let cache = spec(app, Some("CACHE"));
    Command::AttachAddon {
        addon: a.id,
        attachment: cache.clone(),
        release_id: Uuid::new_v4(),
        actor: actor(7),
    }
    .apply(&mut s)
    .unwrap();
    assert_eq!(s.apps[&app].config["CACHE_URL"], a.url().unwrap());
    let before = s.clone();
    let again = Command::AttachAddon {
        addon: a.id,
        attachment: spec(app, Some("cache")),
        release_id: Uuid::new_v4(),
        actor: actor(7),
    };
    assert!(matches!(
        again.apply(&mut s),
        Err(CommandError::Conflict(_))
    ));
    assert_eq!(s, before);
    Command::DetachAddon {
        attachment: cache.id,
        release_id: Uuid::new_v4(),
        actor: actor(8),
    }
    .apply(&mut s)
    .unwrap();
    assert!(!s.apps[&app].config.contains_key("CACHE_URL"));
    assert_eq!(
        descriptions(&s, app).last().unwrap(),
        "Detach CACHE (@ref:cache-one)"
    );
    // The owner cannot be deleted while another app uses its add-on.
    let before = s.clone();
    assert!(matches!(
        Command::DeleteApp { app }.apply(&mut s),
        Err(CommandError::Conflict(_))
    ));
    assert_eq!(s, before);
    // Deleting the other app drops its attachment; then the owner goes and deprovisions.
    Command::DeleteApp { app: other }.apply(&mut s).unwrap();
    assert_eq!(s.attachments.len(), 1);
    Command::DeleteApp { app }.apply(&mut s).unwrap();
    assert!(s.attachments.is_empty());
    assert_eq!(s.addons[&a.id].state, AddonState::Deprovisioning);
}

/// An HA add-on (two members, on nodes 1 and 2) created in `s`, attached to `app`.
fn ha_addon(s: &mut State, app: Uuid) -> Addon {
    add_node(s, 2, "10.0.0.2");
    let mut a = addon(app, "db-ha", "heroku-postgresql", "essential-0", 1, 5432);
    let mut standby = a.members[0].clone();
    standby.id = Uuid::new_v4();
    standby.node = 2;
    standby.host = "10.0.0.2".into();
    a.members.push(standby);
    // The plan of two members, checked by create against the catalog.
    a.plan = "standard-0".into();
    a
}

fn member_report(member: Uuid, generation: u64, streaming: bool, sync: &[Uuid]) -> MemberReport {
    MemberReport {
        member,
        up: true,
        generation,
        streaming,
        sync_standbys: sync.to_vec(),
    }
}

fn report_cmd(node: NodeId, r: MemberReport) -> Command {
    Command::ReportAddonMembers {
        node,
        reports: vec![r],
        gone: vec![],
        at: actor(9).at,
    }
}

fn down(s: &mut State, node: NodeId) {
    Command::SetNodeStatus {
        node_id: node,
        status: NodeStatus::Down,
    }
    .apply(s)
    .unwrap();
}

fn failover_cmd(a: Uuid, to: Uuid) -> Command {
    Command::FailoverAddon {
        addon: a,
        to,
        release_seed: Uuid::new_v4(),
        actor: actor(20),
    }
}

#[test]
fn an_ha_addon_is_provisioned_once_its_standby_is_in_sync() {
    let (mut s, app) = setup();
    let a = ha_addon(&mut s, app);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let (p, sb) = (a.members[0].id, a.members[1].id);
    let got = &s.addons[&a.id];
    assert_eq!(got.primary_id(), Some(p));
    assert_eq!(got.role_of(sb), Role::Standby);
    assert!(got.url().unwrap().contains("@10.0.0.1:5432/"));
    report_cmd(1, member_report(p, 0, false, &[]))
        .apply(&mut s)
        .unwrap();
    report_cmd(2, member_report(sb, 0, true, &[]))
        .apply(&mut s)
        .unwrap();
    // Both answer and the standby streams, but the primary does not wait for it yet.
    assert_eq!(s.addons[&a.id].state, AddonState::Provisioning);
    assert!(s.addons[&a.id].members[1].streaming && !s.addons[&a.id].ha_available());
    // A report of another generation does not count.
    report_cmd(1, member_report(p, 7, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    assert_eq!(s.addons[&a.id].state, AddonState::Provisioning);
    report_cmd(1, member_report(p, 0, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    assert_eq!(s.addons[&a.id].state, AddonState::Provisioned);
    assert!(s.addons[&a.id].ha_available());
}

#[test]
fn failover_promotes_only_a_synced_standby_of_a_down_primary_and_moves_the_url() {
    let (mut s, app) = setup();
    let a = ha_addon(&mut s, app);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let (p, sb) = (a.members[0].id, a.members[1].id);
    report_cmd(2, member_report(sb, 0, true, &[]))
        .apply(&mut s)
        .unwrap();
    // The primary is up: no failover, and the command is refused.
    assert_eq!(failover_target(&s, &s.addons[&a.id]), None);
    let before = s.clone();
    assert!(matches!(
        failover_cmd(a.id, sb).apply(&mut s),
        Err(CommandError::Conflict(_))
    ));
    assert_eq!(s, before);
    // The primary's node is down but the standby was never in sync: no failover.
    let mut unsynced = s.clone();
    down(&mut unsynced, 1);
    assert_eq!(failover_target(&unsynced, &unsynced.addons[&a.id]), None);
    // In sync, then the primary's node goes down: the standby is promoted.
    report_cmd(1, member_report(p, 0, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    down(&mut s, 1);
    assert_eq!(failover_target(&s, &s.addons[&a.id]), Some(sb));
    let out = failover_cmd(a.id, sb).apply(&mut s).unwrap();
    let CommandOutput::Addon { releases, .. } = out else {
        panic!()
    };
    assert_eq!(releases, vec![(app, 3)]);
    let got = &s.addons[&a.id];
    assert_eq!((got.primary_id(), got.generation), (Some(sb), 1));
    assert_eq!(got.role_of(p), Role::Standby);
    assert!(!got.ha_available());
    let url = got.url().unwrap();
    assert!(url.contains("@10.0.0.2:5432/"), "{url}");
    let cfg = &s.apps[&app].config;
    assert_eq!(cfg["DATABASE_URL"], url);
    assert!(cfg
        .iter()
        .filter(|(k, _)| k.starts_with("HEROKU_POSTGRESQL_"))
        .all(|(_, v)| *v == url));
    assert_eq!(
        descriptions(&s, app).last().unwrap(),
        "Failover DATABASE (@ref:db-ha)"
    );
    // Failing over again is refused: the new primary's node is up.
    assert!(failover_cmd(a.id, p).apply(&mut s).is_err());
}

#[test]
fn fencing_an_old_primary_counts_only_as_a_rebuilt_standby_of_the_new_generation() {
    let (mut s, app) = setup();
    let a = ha_addon(&mut s, app);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let (p, sb) = (a.members[0].id, a.members[1].id);
    report_cmd(2, member_report(sb, 0, true, &[]))
        .apply(&mut s)
        .unwrap();
    report_cmd(1, member_report(p, 0, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    down(&mut s, 1);
    failover_cmd(a.id, sb).apply(&mut s).unwrap();
    // The old primary's node returns. What its old server says (generation 0, the
    // primary's sync list) changes nothing.
    Command::SetNodeStatus {
        node_id: 1,
        status: NodeStatus::Up,
    }
    .apply(&mut s)
    .unwrap();
    report_cmd(1, member_report(p, 0, true, &[p]))
        .apply(&mut s)
        .unwrap();
    let got = &s.addons[&a.id];
    assert!(!got.members[0].streaming && !got.members[0].synced);
    assert_eq!(got.primary_id(), Some(sb));
    // Rebuilt as a standby of generation 1, streaming, then in sync: HA again.
    report_cmd(1, member_report(p, 1, true, &[]))
        .apply(&mut s)
        .unwrap();
    report_cmd(2, member_report(sb, 1, false, &[p]))
        .apply(&mut s)
        .unwrap();
    assert!(s.addons[&a.id].ha_available());
    // Its node going down takes it out of sync at once: the primary may stop waiting,
    // and it cannot be promoted.
    down(&mut s, 1);
    assert!(!s.addons[&a.id].ha_available());
    assert!(!s.addons[&a.id].members[0].synced);
}

#[test]
fn a_desynced_standby_comes_back_only_once_it_streams_again() {
    let (mut s, app) = setup();
    let a = ha_addon(&mut s, app);
    create_cmd(&a, None).apply(&mut s).unwrap();
    let (p, sb) = (a.members[0].id, a.members[1].id);
    report_cmd(2, member_report(sb, 0, true, &[]))
        .apply(&mut s)
        .unwrap();
    report_cmd(1, member_report(p, 0, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    assert!(s.addons[&a.id].members[1].synced);
    // Its server froze: the leader takes it out of sync (once).
    Command::DesyncStandby {
        addon: a.id,
        member: sb,
    }
    .apply(&mut s)
    .unwrap();
    assert!(!s.addons[&a.id].members[1].synced);
    assert!(Command::DesyncStandby {
        addon: a.id,
        member: sb,
    }
    .apply(&mut s)
    .is_err());
    // The primary is never desynced this way.
    assert!(Command::DesyncStandby {
        addon: a.id,
        member: p,
    }
    .apply(&mut s)
    .is_err());
    // A primary's report that still lists it (stale, or the frozen standby's old flush)
    // does not bring it back: it must stream first.
    report_cmd(1, member_report(p, 0, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    assert!(!s.addons[&a.id].members[1].synced);
    report_cmd(2, member_report(sb, 0, true, &[]))
        .apply(&mut s)
        .unwrap();
    report_cmd(1, member_report(p, 0, false, &[sb]))
        .apply(&mut s)
        .unwrap();
    assert!(s.addons[&a.id].members[1].synced);
}

#[test]
fn a_standby_is_replaced_only_while_its_node_is_down_and_never_next_to_a_member() {
    let (mut s, app) = setup();
    let a = ha_addon(&mut s, app);
    add_node(&mut s, 3, "10.0.0.3");
    create_cmd(&a, None).apply(&mut s).unwrap();
    let old = a.members[1].id;
    let mut new = a.members[1].clone();
    new.id = Uuid::new_v4();
    new.node = 3;
    new.host = "10.0.0.3".into();
    let replace = |new: &crate::model::AddonMember| Command::ReplaceStandby {
        addon: a.id,
        old,
        new: new.clone(),
    };
    // Its node is up: refused, nothing changes.
    let before = s.clone();
    assert!(replace(&new).apply(&mut s).is_err());
    assert_eq!(s, before);
    down(&mut s, 2);
    // Not onto the primary's node.
    let mut beside = new.clone();
    beside.node = 1;
    beside.host = "10.0.0.1".into();
    assert!(replace(&beside).apply(&mut s).is_err());
    // The primary is never replaced this way.
    let primary = Command::ReplaceStandby {
        addon: a.id,
        old: a.members[0].id,
        new: new.clone(),
    };
    assert!(primary.apply(&mut s).is_err());
    replace(&new).apply(&mut s).unwrap();
    let got = &s.addons[&a.id];
    assert_eq!(got.members.len(), 2);
    let m = got.members.iter().find(|m| m.id == new.id).unwrap();
    assert!(m.node == 3 && !m.up && !m.synced);
    assert!(got.members.iter().all(|m| m.id != old));
}

#[test]
fn a_haven_addon_changes_plan_by_adding_or_removing_its_standby() {
    let (mut s, app) = setup();
    add_node(&mut s, 2, "10.0.0.2");
    let a = addon(app, "db-one", "heroku-postgresql", "essential-0", 1, 5432);
    create_cmd(&a, None).apply(&mut s).unwrap();
    report_cmd(1, member_report(a.members[0].id, 0, false, &[]))
        .apply(&mut s)
        .unwrap();
    assert_eq!(s.addons[&a.id].state, AddonState::Provisioned);
    let mut standby = a.members[0].clone();
    standby.id = Uuid::new_v4();
    standby.node = 2;
    standby.host = "10.0.0.2".into();
    let resize = |plan: &str, add: Option<&crate::model::AddonMember>, remove: Option<Uuid>| {
        Command::ResizeAddon {
            addon: a.id,
            plan: plan.into(),
            add: add.cloned(),
            remove,
            at: chrono::Utc::now(),
        }
    };
    // Up without a standby, or with one beside the primary: refused, nothing changes.
    let before = s.clone();
    assert!(resize("standard-0", None, None).apply(&mut s).is_err());
    let mut beside = standby.clone();
    beside.node = 1;
    beside.host = "10.0.0.1".into();
    beside.port = 5433;
    assert!(resize("standard-0", Some(&beside), None)
        .apply(&mut s)
        .is_err());
    assert!(resize("no-such-plan", None, None).apply(&mut s).is_err());
    assert_eq!(s, before);
    resize("standard-0", Some(&standby), None)
        .apply(&mut s)
        .unwrap();
    let got = &s.addons[&a.id];
    assert_eq!((got.plan.as_str(), got.members.len()), ("standard-0", 2));
    assert_eq!(got.primary_id(), Some(a.members[0].id));
    // Down: never the primary, only the standby.
    assert!(resize("essential-0", None, Some(a.members[0].id))
        .apply(&mut s)
        .is_err());
    resize("essential-0", None, Some(standby.id))
        .apply(&mut s)
        .unwrap();
    let got = &s.addons[&a.id];
    assert_eq!((got.plan.as_str(), got.members.len()), ("essential-0", 1));
}

#[test]
fn promote_moves_database_url_and_the_old_database_keeps_its_colour() {
    let (mut s, app) = setup();
    let first = addon(
        app,
        "postgresql-a-00001",
        "heroku-postgresql",
        "essential-0",
        1,
        5432,
    );
    let second = addon(
        app,
        "postgresql-b-00002",
        "heroku-postgresql",
        "essential-0",
        1,
        5433,
    );
    create_cmd(&first, None).apply(&mut s).unwrap();
    create_cmd(&second, None).apply(&mut s).unwrap();
    let before = s.apps[&app].config.clone();
    let old_colour = before
        .iter()
        .find(|(k, v)| k.starts_with("HEROKU_POSTGRESQL_") && **v == first.url().unwrap())
        .map(|(k, _)| k.clone())
        .unwrap();
    let promote = |s: &mut State, a: &Addon| {
        Command::PromoteAttachment {
            addon: a.id,
            attachment: AttachmentSpec {
                id: Uuid::new_v4(),
                app,
                name: Some("DATABASE".into()),
            },
            release_id: Uuid::new_v4(),
            actor: actor(6),
        }
        .apply(s)
    };
    let out = promote(&mut s, &second).unwrap();
    let CommandOutput::Addon { releases, .. } = out else {
        panic!()
    };
    assert_eq!(releases.len(), 1);
    let cfg = &s.apps[&app].config;
    assert_eq!(cfg["DATABASE_URL"], second.url().unwrap());
    assert_eq!(cfg[&old_colour], first.url().unwrap(), "{cfg:?}");
    assert_eq!(
        cfg.len(),
        before.len(),
        "no var appears or goes: {cfg:?} vs {before:?}"
    );
    assert_eq!(
        descriptions(&s, app).last().unwrap(),
        "Attach DATABASE (@ref:postgresql-b-00002)"
    );
    let names: Vec<(String, String)> = s
        .app_attachments(app)
        .into_iter()
        .map(|t| (s.addons[&t.addon].name.clone(), t.name.clone()))
        .collect();
    assert!(names.contains(&("postgresql-b-00002".into(), "DATABASE".into())));
    assert!(names.contains(&(
        "postgresql-a-00001".into(),
        old_colour.trim_end_matches("_URL").to_string()
    )));
    assert!(!names.contains(&("postgresql-a-00001".into(), "DATABASE".into())));
    // Promoting it again changes nothing; detaching the old one unsets only its colour.
    let n = s.apps[&app].releases.len();
    let CommandOutput::Addon { releases, .. } = promote(&mut s, &second).unwrap() else {
        panic!()
    };
    assert!(releases.is_empty());
    assert_eq!(s.apps[&app].releases.len(), n);
    // A deprovisioning add-on is not promoted.
    Command::DestroyAddon {
        addon: first.id,
        release_seed: Uuid::new_v4(),
        actor: actor(7),
    }
    .apply(&mut s)
    .unwrap();
    assert!(matches!(
        promote(&mut s, &first),
        Err(CommandError::Conflict(_))
    ));
    assert_eq!(s.apps[&app].config["DATABASE_URL"], second.url().unwrap());
    assert!(!s.apps[&app].config.contains_key(&old_colour));
}

#[test]
fn rotating_credentials_changes_the_url_of_every_attached_app_once() {
    let (mut s, app) = setup();
    let other = create_app(&mut s, "other-app");
    let pg = addon(
        app,
        "postgresql-a-00001",
        "heroku-postgresql",
        "essential-0",
        1,
        5432,
    );
    create_cmd(&pg, None).apply(&mut s).unwrap();
    Command::AttachAddon {
        addon: pg.id,
        attachment: AttachmentSpec {
            id: Uuid::new_v4(),
            app: other,
            name: None,
        },
        release_id: Uuid::new_v4(),
        actor: actor(6),
    }
    .apply(&mut s)
    .unwrap();
    let rotate = |s: &mut State, id: Uuid, pw: &str| {
        Command::RotateAddonCredentials {
            addon: id,
            password: pw.into(),
            release_seed: Uuid::new_v4(),
            actor: actor(7),
        }
        .apply(s)
    };
    let old_url = s.apps[&app].config["DATABASE_URL"].clone();
    let out = rotate(&mut s, pg.id, "n3wpassw0rdn3wpassw0rd").unwrap();
    let CommandOutput::Addon { releases, .. } = out else {
        panic!()
    };
    assert_eq!(releases.len(), 2);
    let new_url = s.addons[&pg.id].url().unwrap();
    assert!(new_url.contains(":n3wpassw0rdn3wpassw0rd@") && new_url != old_url);
    assert_eq!(s.apps[&app].config["DATABASE_URL"], new_url);
    assert_eq!(s.apps[&other].config["DATABASE_URL"], new_url);
    assert_eq!(
        descriptions(&s, app).last().unwrap(),
        "Rotate credentials of DATABASE (@ref:postgresql-a-00001)"
    );
    // Refused: the same password, a weak one, Redis, an unknown add-on; nothing changes.
    let n = s.apps[&app].releases.len();
    assert!(rotate(&mut s, pg.id, "n3wpassw0rdn3wpassw0rd").is_err());
    assert!(rotate(&mut s, pg.id, "short").is_err());
    assert!(rotate(&mut s, pg.id, "has spaces in it, sixteen+").is_err());
    assert!(rotate(&mut s, Uuid::new_v4(), "n3wpassw0rdn3wpassw0rX").is_err());
    let redis = addon(app, "redis-b-00002", "heroku-redis", "mini", 1, 6379);
    create_cmd(&redis, None).apply(&mut s).unwrap();
    let n2 = s.apps[&app].releases.len();
    assert!(matches!(
        rotate(&mut s, redis.id, "n3wpassw0rdn3wpassw0rX"),
        Err(CommandError::Invalid(_))
    ));
    assert_eq!(s.apps[&app].releases.len(), n2);
    assert_eq!(n2, n + 1);
    assert_eq!(s.addons[&pg.id].url().unwrap(), new_url);
}
