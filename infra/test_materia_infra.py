"""The declared resources and their settings, against Pulumi's mocks: no CLI, no network, no
Cloudflare account. Run by `make test-infra` (part of `make test`)."""

import json

import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.created = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.append((args.typ, args.name, args.inputs))
        outputs = dict(args.inputs)
        if args.typ == "cloudflare:index/apiToken:ApiToken":
            outputs["value"] = "mock-token-value"
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


MOCKS = Mocks()
pulumi.runtime.set_mocks(MOCKS, project="materia-infra", stack="test", preview=False)

from materia_infra import (  # noqa: E402  (the mocks must be set before resources exist)
    R2_BUCKET_ITEM_READ,
    R2_BUCKET_ITEM_WRITE,
    Settings,
    bucket_resource,
    declare,
    lock_condition,
)

ACCOUNT = "0123456789abcdef0123456789abcdef"


@pulumi.runtime.test
def test_the_bucket_is_the_backup_bucket():
    d = declare(Settings(account_id=ACCOUNT))

    def check(args):
        name, account, location, storage_class = args
        assert name == "materia-backups"
        assert account == ACCOUNT
        assert location == "weur"
        assert storage_class == "Standard"

    return pulumi.Output.all(
        d.bucket.name, d.bucket.account_id, d.bucket.location, d.bucket.storage_class
    ).apply(check)


@pulumi.runtime.test
def test_every_object_is_locked_indefinitely_by_default():
    d = declare(Settings(account_id=ACCOUNT, bucket="b1"))

    def check(args):
        bucket_name, rules = args
        assert bucket_name == "b1"
        assert len(rules) == 1
        rule = rules[0]
        assert rule["enabled"] is True
        assert rule["prefix"] == ""
        assert rule["condition"]["type"] == "Indefinite"

    return pulumi.Output.all(d.lock.bucket_name, d.lock.rules).apply(check)


@pulumi.runtime.test
def test_a_lock_of_n_days_is_an_age_condition():
    d = declare(Settings(account_id=ACCOUNT, bucket="b2", lock_days=400))

    def check(rules):
        assert rules[0]["condition"]["type"] == "Age"
        assert rules[0]["condition"]["max_age_seconds"] == 400 * 86_400

    return d.lock.rules.apply(check)


@pulumi.runtime.test
def test_the_token_reads_and_writes_objects_of_that_bucket_only():
    d = declare(Settings(account_id=ACCOUNT, bucket="b3"))

    def check(policies):
        assert len(policies) == 1
        policy = policies[0]
        assert policy["effect"] == "allow"
        groups = {g["id"] for g in policy["permission_groups"]}
        assert groups == {R2_BUCKET_ITEM_READ, R2_BUCKET_ITEM_WRITE}
        resources = json.loads(policy["resources"])
        assert resources == {f"com.cloudflare.edge.r2.bucket.{ACCOUNT}_default_b3": "*"}
        # No account-wide or zone permission, nothing beyond the one bucket.
        assert all(k.startswith("com.cloudflare.edge.r2.bucket.") for k in resources)

    return d.token.policies.apply(check)


def test_the_declared_resources_are_protected_and_exactly_these():
    types = sorted({t for t, _, _ in MOCKS.created})
    assert types == [
        "cloudflare:index/apiToken:ApiToken",
        "cloudflare:index/r2Bucket:R2Bucket",
        "cloudflare:index/r2BucketLock:R2BucketLock",
    ]


def test_bad_settings_are_refused_before_anything_is_declared():
    with pytest.raises(ValueError, match="accountId is not set"):
        declare(Settings(account_id=""))
    with pytest.raises(ValueError, match="negative"):
        lock_condition(-1)
    assert bucket_resource("acc", "bkt") == "com.cloudflare.edge.r2.bucket.acc_default_bkt"
