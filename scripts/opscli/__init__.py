"""The platform's operations command line: bucket catalogue, IAM, PostgreSQL backup and restore.

Talks to the cluster through the minio SDK (`Minio`) and its admin client (`MinioAdmin`); no `mc`.
Run it as `scripts/ops`; every sub-command has `--help`.
"""
