//! Add-ons, plans, services and attachments on the wire (see the parent module).

use super::*;

#[test]
fn addons_and_attachments() {
    let mut s = state();
    let addon = model::Addon {
        id: Uuid::from_u128(90),
        name: "postgresql-curved-12345".into(),
        service: "heroku-postgresql".into(),
        plan: "essential-0".into(),
        app: app().id,
        state: model::AddonState::Provisioned,
        password: "never-on-the-wire-0123456789".into(),
        members: vec![model::AddonMember {
            id: Uuid::from_u128(91),
            node: NODE,
            host: "127.0.0.1".into(),
            port: 5432,
            up: true,
            streaming: false,
            synced: false,
        }],
        created_at: at(6),
        updated_at: at(7),
        primary: None,
        generation: 0,
        provider_resource: None,
        provider_config: Default::default(),
    };
    let att = model::Attachment {
        id: Uuid::from_u128(92),
        addon: addon.id,
        app: addon.app,
        name: "DATABASE".into(),
        config_vars: vec!["DATABASE_URL".into(), "HEROKU_POSTGRESQL_JADE_URL".into()],
        created_at: at(6),
    };
    s.addons.insert(addon.id, addon.clone());
    s.attachments.insert(att.id, att.clone());
    let wire = super::super::addons::addon_wire(&s, &addon).unwrap();
    let back = round_trip(
        &wire,
        &[
            "actions",
            "addon_service",
            "app",
            "billed_price",
            "billing_entity",
            "config_vars",
            "created_at",
            "id",
            "members",
            "name",
            "plan",
            "provider_id",
            "provision_message",
            "state",
            "updated_at",
            "web_url",
        ],
    );
    assert_eq!(
        back.config_vars,
        ["DATABASE_URL", "HEROKU_POSTGRESQL_JADE_URL"]
    );
    assert_eq!(back.plan.name, "heroku-postgresql:essential-0");
    assert!(!serde_json::to_string(&wire)
        .unwrap()
        .contains("never-on-the-wire"));
    round_trip(
        &wire.plan,
        &[
            "addon_service",
            "available",
            "compliance",
            "created_at",
            "default",
            "description",
            "human_name",
            "id",
            "installable_inside_private_network",
            "installable_outside_private_network",
            "members",
            "memory_mb",
            "name",
            "price",
            "space_default",
            "state",
            "updated_at",
            "visible",
        ],
    );
    round_trip(
        &wire.addon_service,
        &[
            "cli_plugin_name",
            "created_at",
            "human_name",
            "id",
            "name",
            "state",
            "supported_generations",
            "supports_multiple_installations",
            "supports_sharing",
            "updated_at",
        ],
    );
    let t = super::super::addon_attachments::attachment_wire(&s, &att);
    let back = round_trip(
        &t,
        &[
            "addon",
            "app",
            "config_vars",
            "created_at",
            "id",
            "log_input_url",
            "name",
            "namespace",
            "updated_at",
            "web_url",
        ],
    );
    assert_eq!(
        (back.addon.app.name.as_str(), back.app.name.as_str()),
        ("my-app", "my-app")
    );
}

#[test]
fn providers_and_their_addons() {
    let mut s = state();
    let p = model::AddonProvider {
        id: Uuid::from_u128(95),
        name: "my-mail".into(),
        url: "http://10.0.0.9:8080".into(),
        password: "never-on-the-wire-provider".into(),
        plans: vec!["basic".into(), "pro".into()],
        created_at: at(5),
    };
    s.addon_providers.insert(p.name.clone(), p.clone());
    let wire = super::super::addon_providers::provider_wire(&p);
    round_trip(&wire, &["created_at", "id", "name", "plans", "url"]);
    assert!(!serde_json::to_string(&wire)
        .unwrap()
        .contains("never-on-the-wire"));
    let addon = model::Addon {
        id: Uuid::from_u128(96),
        name: "my-mail-flat-00001".into(),
        service: "my-mail".into(),
        plan: "pro".into(),
        app: app().id,
        state: model::AddonState::Provisioned,
        password: String::new(),
        members: Vec::new(),
        created_at: at(6),
        updated_at: at(7),
        primary: None,
        generation: 0,
        provider_resource: Some("res-9".into()),
        provider_config: [(
            "MY_MAIL_TOKEN".to_string(),
            "never-on-the-wire-value".to_string(),
        )]
        .into(),
    };
    s.addons.insert(addon.id, addon.clone());
    let wire = super::super::addons::addon_wire(&s, &addon).unwrap();
    let json = serde_json::to_string(&wire).unwrap();
    assert!(!json.contains("never-on-the-wire"), "{json}");
    let back: w::addons::Addon = serde_json::from_str(&json).unwrap();
    assert_eq!(back.plan.name, "my-mail:pro");
    assert!(!back.plan.default);
    assert_eq!(back.addon_service.name, "my-mail");
    assert_eq!(back.provider_id, "res-9");
    assert!(back.members.is_empty());
}
