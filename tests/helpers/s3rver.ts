/** A real S3 server for tests (shared with the benchmark, which starts one the same way). */
export { startS3rver, type TestS3 } from '../../scripts/lib/s3rver';
