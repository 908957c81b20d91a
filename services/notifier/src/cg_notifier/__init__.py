"""Cost Guardian's notifier: alerts to webhooks, signed, durable, retried."""
