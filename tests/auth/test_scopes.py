"""Scope grammar: type[(class)]:name:actions, names with host:port, merging."""
from registry.auth.scopes import Scope, challenge_scope, parse_scope, parse_scopes


def test_plain_scope():
    assert parse_scope("repository:acme/app:pull,push") == Scope("repository", "acme/app", ("pull", "push"))


def test_name_with_host_and_port_parsed_from_both_ends():
    s = parse_scope("repository:localhost:5000/acme/app:pull")
    assert s == Scope("repository", "localhost:5000/acme/app", ("pull",))
    s = parse_scope("repository:registry.example.com:443/a/b:push,pull")
    assert (s.name, s.actions) == ("registry.example.com:443/a/b", ("push", "pull"))


def test_resource_class():
    s = parse_scope("repository(plugin):acme/app:pull")
    assert (s.type, s.klass, s.name) == ("repository", "plugin", "acme/app")
    assert str(s) == "repository(plugin):acme/app:pull"


def test_catalog_and_wildcard():
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))


def test_empty_actions_and_duplicates():
    assert parse_scope("repository:acme/app:").actions == ()
    assert parse_scope("repository:acme/app:pull,pull,,push").actions == ("pull", "push")


def test_malformed_scopes_are_none():
    for bad in ("", "repository", "repository:acme/app", ":acme/app:pull", "repository::pull", "re po:x:pull",
                "repository():x:pull"):
        assert parse_scope(bad) is None, bad


def test_parse_scopes_splits_spaces_merges_and_skips_garbage():
    got = parse_scopes(["repository:acme/a:pull repository:acme/b:push", "repository:acme/a:push", "garbage"])
    assert got == [Scope("repository", "acme/a", ("pull", "push")), Scope("repository", "acme/b", ("push",))]


def test_challenge_scope_for_push_asks_pull_and_push():
    assert challenge_scope("repository", "acme/app", "push") == "repository:acme/app:pull,push"
    assert challenge_scope("repository", "acme/app", "pull") == "repository:acme/app:pull"
    assert challenge_scope("repository", "acme/app", "delete") == "repository:acme/app:delete"
    assert challenge_scope("registry", "catalog", "*") == "registry:catalog:*"
