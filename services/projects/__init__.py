"""projects: research projects posted by institutes (port 8002); publishes projects.v1."""
