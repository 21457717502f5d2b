"""Slack ChatOps: the only package that imports slack_bolt / slack_sdk.

- `blocks`, `limits`: pure Block Kit rendering and Slack's limits;
- `approvers`, `routing`, `commands`: pure rules (who may approve, which channel, `/pitcrew` grammar);
- `messages`: the incident message and thread, queued in the store's outbox;
- `outbox`: delivery of queued Web API calls (order per thread, retries, Retry-After);
- `workflow`: approve / reject / rollback, checked against the store and the approver rules;
- `service`: the Bolt app and its listeners (HTTP through the aiohttp adapter, or Socket Mode);
- `settings`: the `slack` / `alertmanager` config sections as the code above uses them.

Its cleanup context in the app, `POST /slack/events` and `post_incident(app, incident_id)` are
bot/wiring/slack.py (they read the app's state; nothing in this package does).
"""
