// Creates the database DATABASE_URL names when it does not exist yet (connecting to the server's
// "postgres" database to do so). Prints one clear line on failure instead of a stack trace.
import pg from 'pg';

const url = new URL(process.argv[2]);
const name = decodeURIComponent(url.pathname.slice(1));
const admin = new URL(url);
admin.pathname = '/postgres';
const client = new pg.Client({ connectionString: admin.toString() });
try {
  await client.connect();
  const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
  if (rowCount === 0) {
    await client.query(`create database "${name.replaceAll('"', '""')}"`);
    console.error(`==> Created database ${name}`);
  }
} catch (error) {
  console.error(`flowthru setup: cannot prepare database ${name} at ${url.host}: ${error.message}`);
  process.exitCode = 1;
} finally {
  await client.end().catch(() => {});
}
