import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataConverterFromEnv } from '../../src/adapters/temporal/data-converter.js';
import type { CodecServer } from '../../src/client/codec-server.js';
import { serveCodec } from '../../src/client/commands/codec-server.js';
import { freePort } from '../../src/demo/ports.js';
import { startTemporalDevServer, type DevServer } from '../../src/demo/temporal-dev-server.js';
import { onboardWorkflowId, pipelineSummary } from '../../src/workflows/config.js';

/*
 * What a person sees: the real Temporal UI (the dev server's), in headless Chromium, configured with
 * flowthru's codec server as the dev server's --ui-codec-endpoint, shows a workflow's encrypted
 * input and summary decoded. Screenshots go to test-artifacts/.
 */

const ARTIFACTS = join(process.cwd(), 'test-artifacts');

function chromiumPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('Chromium is not installed: ./dev.sh test installs it (apt-get install chromium)');
  }
}

let temporal: DevServer;
let codec: CodecServer;
let client: Client;
let browser: Browser;

beforeAll(async () => {
  const uiPort = await freePort();
  codec = await serveCodec({ host: '127.0.0.1', port: await freePort(), origins: [`http://127.0.0.1:${uiPort}`, `http://localhost:${uiPort}`] });
  temporal = await startTemporalDevServer({ port: await freePort(), uiPort, uiCodecEndpoint: codec.url });
  client = new Client({ connection: await Connection.connect({ address: temporal.address }), dataConverter: dataConverterFromEnv() });
  browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  mkdirSync(ARTIFACTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await client?.connection.close();
  await temporal?.stop();
  await codec?.close();
});

describe('Temporal UI with the codec server', () => {
  it("shows a pipeline's encrypted input and summary decoded", async () => {
    const input = { customer: 'uitest', source: 'hr', externalId: 'UI4242', userId: '97531' };
    // No worker on this task queue: the workflow waits, its start event holding the sealed input.
    const handle = await client.workflow.start('onboardUser', {
      workflowId: onboardWorkflowId('uitest', 'hr', 'UI4242'),
      taskQueue: 'nobody-polls-this',
      args: [input],
      staticSummary: pipelineSummary('uitest', 'hr', 'UI4242', '97531'),
    });
    // The history itself holds no readable input (the external id is in the workflow id, by design).
    const history = JSON.stringify(await handle.fetchHistory());
    expect(history).not.toContain('97531');

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    try {
      const decodeCalls: string[] = [];
      page.on('request', (request) => {
        if (request.url().startsWith(`${codec.url}/decode`)) decodeCalls.push(request.method());
      });
      const url = `${temporal.uiUrl}/namespaces/default/workflows/${encodeURIComponent(handle.workflowId)}/${handle.firstExecutionRunId}/history`;
      await page.goto(url, { waitUntil: 'domcontentloaded' });
      // The summary and the input, decoded by the codec server in the browser.
      await page.getByText('pipeline of uitest/hr user UI4242 (flowthru user id 97531)').first().waitFor({ timeout: 45_000 });
      await page.getByText('"97531"').first().waitFor({ timeout: 45_000 });
      await page.screenshot({ path: join(ARTIFACTS, 'temporal-ui-decoded.png'), fullPage: true });
      console.log(`screenshot: ${join(ARTIFACTS, 'temporal-ui-decoded.png')}`);
      expect(decodeCalls).toContain('POST');
    } finally {
      await page.close();
      await handle.terminate('test done');
    }
  }, 120_000);
});
