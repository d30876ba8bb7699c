import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onboardStateQuery } from '../../src/workflows/messages.js';
import { onboardWorkflowId } from '../../src/workflows/config.js';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';

let h: PipelineHarness;
let version: number;

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  version = await h.apply({
    version: 1,
    customers: [
      {
        name: 'big',
        settings: { flowThrough: { enabled: true, addSync: true, criteria: 'ftp' } },
        criteria: [
          { name: 'everyone', usage: 'move', when: { all: [] } },
          { name: 'anyone', usage: 'ftp', when: { all: [] } },
        ],
        profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
        ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'anyone', profile: 'line' }] }],
        sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: `${h.dir}/big.csv`, externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username' } }],
        sites: [{ name: 'hq', moveCriteria: { csv: 'everyone' }, numberRanges: [{ from: '10000', to: '10999' }] }],
      },
    ],
  });
});
afterAll(async () => h?.close());

describe('a long sync', () => {
  it('continues as new, keeps its place and its tallies, and reports once', async () => {
    h.writeFile('big.csv', acmeCsv(Array.from({ length: 300 }, (_, i) => ({ employee_id: `B${i}`, login: `b${i}` }))));
    const handle = await h.startSync('big', 'hr', version, { pageSize: 25, window: 20, maxHistoryEvents: 120 });
    const report = await handle.result();
    expect(report.counts).toMatchObject({ seen: 300, imported: 300, provisioned: 300, placed: 300, moved: 0 });
    // More than one run: the first continued as new (asked of the run itself: Temporal's list is
    // eventually consistent, and lagged behind under load).
    const [started] = (await h.client.workflow.getHandle(handle.workflowId).fetchHistory()).events ?? [];
    expect(started?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId).toBeTruthy();
    const numbers = await h.db.selectFrom('number_inventory').select('number').where('status', '=', 'used').execute();
    expect(new Set(numbers.map((n) => n.number)).size).toBe(300);
  }, 120_000);

  it("a user's pipeline answers a status query", async () => {
    const handle = h.client.workflow.getHandle(onboardWorkflowId('big', 'hr', 'B7'));
    expect(await handle.query(onboardStateQuery)).toMatchObject({ step: 'done', status: 'provisioned', site: 'hq', profile: 'line', number: expect.stringMatching(/^10\d{3}$/) });
  });
});
