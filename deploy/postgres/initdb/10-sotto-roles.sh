#!/usr/bin/env bash
# Runs once, on the first start of an empty data directory (pgvector/pgvector:pg18 entrypoint),
# as the postgres superuser. Creates Sotto's two roles, its database and the vector extension.
#   owner   (sotto_owner): owns the database and every table; runs migrations only.
#   runtime (sotto_app):   web, workers, beat. Not the owner, NOBYPASSRLS: row-level security binds it.
# Passwords come from the files the compose `secrets` service wrote (deploy/secrets_init.py).
set -euo pipefail
secrets_dir="${SOTTO_DB_SECRETS_DIR:-/run/secrets/sotto}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$(cat "$secrets_dir/owner_password")" \
  -v app_pw="$(cat "$secrets_dir/app_password")" <<'SQL'
CREATE ROLE sotto_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE sotto_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'app_pw';
CREATE DATABASE sotto OWNER sotto_owner;
\connect sotto
-- pgvector is not a trusted extension: the superuser installs it; migrations then find it.
CREATE EXTENSION IF NOT EXISTS vector;
-- PostgreSQL 15+: public belongs to the database owner and PUBLIC may not create in it.
REVOKE ALL ON DATABASE sotto FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE sotto TO sotto_app;
GRANT USAGE ON SCHEMA public TO sotto_app;
SQL
