"""`pulumi up` in infra/: Materia's R2 backup bucket, its lock rule and backup-sync's token
(materia_infra.py). Config: accountId (required), bucket, location, lockDays."""

import pulumi

from materia_infra import Settings, declare

config = pulumi.Config()
declared = declare(
    Settings(
        account_id=config.require("accountId"),
        bucket=config.get("bucket") or "materia-backups",
        location=config.get("location") or "weur",
        lock_days=config.get_int("lockDays") or 0,
    )
)
pulumi.export("bucket", declared.bucket.name)
# R2's S3 credentials for backup-sync: the token's id is the access key id, the SHA-256 of its
# value the secret access key (Cloudflare's R2 documentation). Into .env.prod.sops as
# R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY.
pulumi.export("r2_access_key_id", declared.token.id)
pulumi.export("r2_token_value", pulumi.Output.secret(declared.token.value))
