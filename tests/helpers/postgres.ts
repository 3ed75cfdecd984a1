/** A throwaway PostgreSQL cluster for tests (shared with the benchmark, which starts one the same way). */
export { startPostgres, type TestPostgres } from '../../scripts/lib/pg-cluster';
