"""matching: ranked partner suggestions and consortium proposals (port 8004); publishes suggestions.v1."""
