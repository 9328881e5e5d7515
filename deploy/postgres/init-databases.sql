-- One database per service. Run by the postgres image's entrypoint from
-- /docker-entrypoint-initdb.d, once, when the data volume is empty, as
-- POSTGRES_USER (which therefore owns the databases).
CREATE DATABASE registry;
CREATE DATABASE projects;
CREATE DATABASE calls;
CREATE DATABASE matching;
CREATE DATABASE alerts;
CREATE DATABASE consortia;
CREATE DATABASE portal;
