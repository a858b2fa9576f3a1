"""Alarms out of the store to the people who act on them: the outbox sender, webhooks and MQTT."""
