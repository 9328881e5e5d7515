"""registry: company capability profiles (port 8001); publishes companies.v1."""
