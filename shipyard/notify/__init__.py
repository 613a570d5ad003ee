"""Outbound notifications: a project's webhook URLs are told, with an HMAC-signed JSON body,
when its builds conclude (and, if asked, start). docs/webhooks.md."""
