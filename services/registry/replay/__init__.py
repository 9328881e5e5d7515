"""A local replay of the portal's funded-project endpoints, for the history importer's tests and demos."""
