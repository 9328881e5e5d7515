"""alerts: companies' alert subscriptions and their inbox (port 8005); publishes alerts.v1."""
