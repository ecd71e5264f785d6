use std::collections::BTreeMap;

use chrono::DateTime;
use uuid::Uuid;

use crate::command::fixtures::{actor, create as create_app};
use crate::command::{AttachmentSpec, Command, CommandError, CommandOutput};
use crate::model::{Addon, AddonProvider, AddonState, State};

fn provider(name: &str) -> AddonProvider {
    AddonProvider {
        id: Uuid::new_v4(),
        name: name.into(),
        url: "http://10.0.0.9:8080".into(),
        password: "s3cretpassword".into(),
        plans: vec!["basic".into(), "pro".into()],
        created_at: DateTime::from_timestamp(0, 0).unwrap(),
    }
}

fn provider_addon(app: Uuid, name: &str, service: &str, config: &[(&str, &str)]) -> Addon {
    Addon {
        id: Uuid::new_v4(),
        name: name.into(),
        service: service.into(),
        plan: "basic".into(),
        app,
        state: AddonState::Provisioning,
        password: String::new(),
        members: Vec::new(),
        created_at: DateTime::from_timestamp(0, 0).unwrap(),
        updated_at: DateTime::from_timestamp(0, 0).unwrap(),
        primary: None,
        generation: 0,
        provider_resource: Some("res-1".into()),
        provider_config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn apply(s: &mut State, cmd: Command) -> Result<CommandOutput, CommandError> {
    cmd.apply(s)
}

fn create_in(
    s: &mut State,
    a: &Addon,
    as_name: Option<&str>,
) -> Result<CommandOutput, CommandError> {
    apply(
        s,
        Command::CreateAddon {
            addon: a.clone(),
            attachment: AttachmentSpec {
                id: Uuid::new_v4(),
                app: a.app,
                name: as_name.map(str::to_string),
            },
            release_id: Uuid::new_v4(),
            actor: actor(5),
        },
    )
}

fn setup() -> (State, Uuid) {
    let mut s = State::default();
    let app = create_app(&mut s, "my-app");
    apply(
        &mut s,
        Command::AddAddonProvider {
            provider: provider("my-mail"),
        },
    )
    .unwrap();
    (s, app)
}

#[test]
fn providers_register_once_and_are_validated() {
    let (mut s, _) = setup();
    let again = apply(
        &mut s,
        Command::AddAddonProvider {
            provider: provider("my-mail"),
        },
    );
    assert!(matches!(again, Err(CommandError::Conflict(_))), "{again:?}");
    let mut bad = provider("postgres");
    assert!(apply(
        &mut s,
        Command::AddAddonProvider {
            provider: bad.clone()
        }
    )
    .is_err());
    bad.name = "other".into();
    bad.url = "http://user:pw@x".into();
    assert!(apply(
        &mut s,
        Command::AddAddonProvider {
            provider: bad.clone()
        }
    )
    .is_err());
    bad.url = "http://x".into();
    bad.password = "short".into();
    assert!(apply(&mut s, Command::AddAddonProvider { provider: bad }).is_err());
    assert_eq!(s.addon_providers.len(), 1);
}

#[test]
fn a_provider_addon_is_provisioned_at_once_and_sets_prefixed_vars_in_one_release() {
    let (mut s, app) = setup();
    let a = provider_addon(
        app,
        "my-mail-flat-00001",
        "my-mail",
        &[("MY_MAIL_URL", "https://mail/1"), ("TOKEN", "t1")],
    );
    let before = s.apps[&app].releases.len();
    let out = create_in(&mut s, &a, None).unwrap();
    let CommandOutput::Addon {
        addon, attachments, ..
    } = out
    else {
        panic!()
    };
    assert_eq!(addon.state, AddonState::Provisioned);
    assert_eq!(attachments[0].name, "MY_MAIL");
    assert_eq!(attachments[0].config_vars, ["MY_MAIL_TOKEN", "MY_MAIL_URL"]);
    let cfg = &s.apps[&app].config;
    assert_eq!(cfg["MY_MAIL_URL"], "https://mail/1");
    assert_eq!(cfg["MY_MAIL_TOKEN"], "t1");
    assert_eq!(s.apps[&app].releases.len(), before + 1);
    assert_eq!(
        s.apps[&app].releases.last().unwrap().description,
        "Attach MY_MAIL (@ref:my-mail-flat-00001)"
    );
    // A second one gets a colour name; --as a name of its own.
    let b = provider_addon(
        app,
        "my-mail-flat-00002",
        "my-mail",
        &[("URL", "https://mail/2")],
    );
    create_in(&mut s, &b, None).unwrap();
    let c = provider_addon(
        app,
        "my-mail-flat-00003",
        "my-mail",
        &[("URL", "https://mail/3")],
    );
    create_in(&mut s, &c, Some("outbox")).unwrap();
    let cfg = &s.apps[&app].config;
    assert_eq!(cfg["OUTBOX_URL"], "https://mail/3");
    assert!(
        cfg.iter().any(|(k, v)| k.starts_with("MY_MAIL_")
            && k.ends_with("_URL")
            && v == "https://mail/2"
            && k != "MY_MAIL_URL"),
        "{cfg:?}"
    );
    // Nothing of it reaches a node: no members, so no memory and no server.
    assert!(s.addons.values().all(|a| a.members.is_empty()));
}

#[test]
fn provider_addons_need_a_registered_provider_and_plan_and_valid_config() {
    let (mut s, app) = setup();
    let unknown = provider_addon(app, "x-flat-00001", "nope", &[("URL", "u")]);
    assert!(matches!(
        create_in(&mut s, &unknown, None),
        Err(CommandError::NotFound(_))
    ));
    let mut plan = provider_addon(app, "x-flat-00002", "my-mail", &[("URL", "u")]);
    plan.plan = "gold".into();
    assert!(create_in(&mut s, &plan, None).is_err());
    let bad = provider_addon(app, "x-flat-00003", "my-mail", &[("1BAD", "u")]);
    assert!(matches!(
        create_in(&mut s, &bad, None),
        Err(CommandError::Invalid(_))
    ));
    assert!(s.addons.is_empty());
    assert_eq!(s.apps[&app].releases.len(), 1);
}

#[test]
fn plan_changes_update_vars_and_destroy_removes_at_once() {
    let (mut s, app) = setup();
    let a = provider_addon(
        app,
        "my-mail-flat-00001",
        "my-mail",
        &[("URL", "https://1")],
    );
    create_in(&mut s, &a, None).unwrap();
    // Plan only: no release.
    let n = s.apps[&app].releases.len();
    apply(
        &mut s,
        Command::ChangeAddonPlan {
            addon: a.id,
            plan: "pro".into(),
            config: None,
            release_seed: Uuid::new_v4(),
            actor: actor(6),
        },
    )
    .unwrap();
    assert_eq!(s.addons[&a.id].plan, "pro");
    assert_eq!(s.apps[&app].releases.len(), n);
    // New config: one release, old var replaced.
    let config = BTreeMap::from([("API_KEY".to_string(), "k".to_string())]);
    apply(
        &mut s,
        Command::ChangeAddonPlan {
            addon: a.id,
            plan: "basic".into(),
            config: Some(config),
            release_seed: Uuid::new_v4(),
            actor: actor(7),
        },
    )
    .unwrap();
    let cfg = &s.apps[&app].config;
    assert_eq!(cfg.get("MY_MAIL_API_KEY").map(String::as_str), Some("k"));
    assert!(!cfg.contains_key("MY_MAIL_URL"));
    assert_eq!(s.apps[&app].releases.len(), n + 1);
    let bad = apply(
        &mut s,
        Command::ChangeAddonPlan {
            addon: a.id,
            plan: "gold".into(),
            config: None,
            release_seed: Uuid::new_v4(),
            actor: actor(8),
        },
    );
    assert!(bad.is_err());
    // The provider cannot go while its add-on exists.
    assert!(matches!(
        apply(
            &mut s,
            Command::RemoveAddonProvider {
                name: "my-mail".into()
            }
        ),
        Err(CommandError::Conflict(_))
    ));
    apply(
        &mut s,
        Command::DestroyAddon {
            addon: a.id,
            release_seed: Uuid::new_v4(),
            actor: actor(9),
        },
    )
    .unwrap();
    assert!(s.addons.is_empty() && s.attachments.is_empty());
    assert!(!s.apps[&app].config.keys().any(|k| k.starts_with("MY_MAIL")));
    apply(
        &mut s,
        Command::RemoveAddonProvider {
            name: "my-mail".into(),
        },
    )
    .unwrap();
    assert!(s.addon_providers.is_empty());
}

#[test]
fn deleting_an_app_removes_its_provider_addons() {
    let (mut s, app) = setup();
    let a = provider_addon(
        app,
        "my-mail-flat-00001",
        "my-mail",
        &[("URL", "https://1")],
    );
    create_in(&mut s, &a, None).unwrap();
    apply(&mut s, Command::DeleteApp { app }).unwrap();
    assert!(s.addons.is_empty());
}
