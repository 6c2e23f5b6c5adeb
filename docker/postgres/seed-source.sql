-- Seeds the source cluster's `shop` database once, at its first start (docker-entrypoint-initdb.d),
-- with the sandbox's own seed file in one transaction, like sandbox/postgres.ts does.
\set ON_ERROR_STOP on
begin;
select set_config('tiershift.seed_rows', '100000', true);
\i /tiershift/seed.sql
commit;
