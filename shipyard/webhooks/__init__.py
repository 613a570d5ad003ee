"""Inbound webhooks (GitHub, GitLab, Gitea/Forgejo): signatures, events, Northflank's build
rules, and the record of what each delivery did and why (docs/webhooks.md)."""
