"""Materia's Cloudflare R2 resources, declared once for `pulumi up` (__main__.py) and the tests
(test_materia_infra.py, which run them against Pulumi's mocks: no CLI, no network, no account).

- The backup bucket that backup-sync pushes to (BACKUP_REMOTE=r2:BUCKET/PREFIX).
- A bucket lock rule: no object can be deleted or overwritten, even with a valid key, for
  `lock_days` days after it was written, or ever (`lock_days` 0, the default). Landing files are
  the pipeline's history and backup-sync never deletes: the lock makes that true of anyone who
  steals the key too.
- backup-sync's API token, scoped to that one bucket, with object read and write. Cloudflare has
  no R2 permission that writes without deleting ("Workers R2 Storage Bucket Item Write" includes
  delete), so the lock rule is what keeps the backups append-only.
"""

import json
from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare

# Cloudflare's permission groups for R2 objects in one bucket (ids as the API lists them:
# GET /accounts/{account_id}/tokens/permission_groups; check them before `pulumi up`).
R2_BUCKET_ITEM_READ = "6a018a9f2fc74eb6b293b0c548f38b39"
R2_BUCKET_ITEM_WRITE = "2efd5506f9c8494dacb1fa10a3e7d5b6"
SECONDS_PER_DAY = 86_400


@dataclass
class Settings:
    account_id: str
    bucket: str = "materia-backups"
    location: str = "weur"
    # 0: objects are locked indefinitely; N: for N days after they were written.
    lock_days: int = 0
    read_group: str = R2_BUCKET_ITEM_READ
    write_group: str = R2_BUCKET_ITEM_WRITE


@dataclass
class Declared:
    bucket: cloudflare.R2Bucket
    lock: cloudflare.R2BucketLock
    token: cloudflare.ApiToken


def lock_condition(lock_days: int) -> dict:
    if lock_days < 0:
        raise ValueError(f"lockDays {lock_days} is negative: 0 (indefinite) or a number of days")
    if lock_days == 0:
        return {"type": "Indefinite"}
    return {"type": "Age", "max_age_seconds": lock_days * SECONDS_PER_DAY}


def bucket_resource(account_id: str, bucket: str) -> str:
    """The token policy's resource key for one R2 bucket (default jurisdiction)."""
    return f"com.cloudflare.edge.r2.bucket.{account_id}_default_{bucket}"


def declare(s: Settings) -> Declared:
    if not s.account_id:
        raise ValueError("accountId is not set: pulumi config set materia-infra:accountId ID")
    bucket = cloudflare.R2Bucket(
        "backups",
        account_id=s.account_id,
        name=s.bucket,
        location=s.location,
        storage_class="Standard",
        opts=pulumi.ResourceOptions(protect=True),
    )
    lock = cloudflare.R2BucketLock(
        "backups-lock",
        account_id=s.account_id,
        bucket_name=bucket.name,
        rules=[
            cloudflare.R2BucketLockRuleArgs(
                id="materia-append-only",
                enabled=True,
                # Every object: landing files of every dataset and the state DB snapshots.
                prefix="",
                condition=cloudflare.R2BucketLockRuleConditionArgs(**lock_condition(s.lock_days)),
            )
        ],
        opts=pulumi.ResourceOptions(protect=True),
    )
    token = cloudflare.ApiToken(
        "backup-sync",
        name=f"materia backup-sync ({s.bucket})",
        policies=[
            cloudflare.ApiTokenPolicyArgs(
                effect="allow",
                permission_groups=[
                    cloudflare.ApiTokenPolicyPermissionGroupArgs(id=s.read_group),
                    cloudflare.ApiTokenPolicyPermissionGroupArgs(id=s.write_group),
                ],
                resources=json.dumps({bucket_resource(s.account_id, s.bucket): "*"}),
            )
        ],
    )
    return Declared(bucket=bucket, lock=lock, token=token)
